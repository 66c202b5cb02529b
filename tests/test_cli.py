"""The `pokemon` command line, run as users run it: a child process, in-process or against a real server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from core import wiring
from core.config import load_settings
from core.creature import Rarity
from core.rarity import RarityTable
from core.service import CreatureService
from core.version import version
from handlers.cli.batch import BatchResult, Progress, run_batch, summary_lines
from handlers.cli.client import InProcessClient
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.paths import SHIPPED_IMAGES
from tests.support.ports import free_port
from tests.support.python_child import python_ok
from tests.support.server import ServerFactory

CONTRACT_KEYS = {"imageBase64", "metadata", "generatedAt"}
METADATA_KEYS = {
    "id",
    "name",
    "rarity",
    "seed",
    "nameSource",
    "imageSource",
    "imageFormat",
    "imageWidth",
    "imageHeight",
}
RARITIES = ("F", "E", "D", "C", "B", "A", "S", "S+")


# ------------------------------------------------------------------------------------------ in-process


def test_generate_in_process_prints_a_summary() -> None:
    result = run_cli("generate", "--seed", "42")
    assert result.returncode == 0, result.stderr
    assert "pkm_" in result.stdout
    assert "seed     42" in result.stdout
    assert "name=local image=files" in result.stdout


def test_generate_in_process_json_and_png(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "creature.png"
    result = run_cli("generate", "--json", "--seed", "7", "--out", str(out))
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert set(payload) == CONTRACT_KEYS
    assert set(payload["metadata"]) == METADATA_KEYS
    assert payload["metadata"]["seed"] == 7
    assert payload["metadata"]["rarity"] in RARITIES
    with Image.open(out) as image:
        assert image.format == "PNG"
        image.verify()


def test_generate_seed_is_reproducible_across_runs() -> None:
    first, second = (json.loads(run_cli("generate", "--json", "--seed", "12345").stdout) for _ in range(2))
    assert first["metadata"]["name"] == second["metadata"]["name"]
    assert first["metadata"]["rarity"] == second["metadata"]["rarity"]
    assert first["imageBase64"] == second["imageBase64"]
    assert first["metadata"]["id"] != second["metadata"]["id"]  # ids stay fresh on every call


def test_batch_in_process(tmp_path: Path) -> None:
    result = run_cli("batch", "-n", "5", "--out", str(tmp_path / "batch"), "--seed-start", "100")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "batch").glob("*.png"))) == 5
    assert "5 created, 0 failed" in result.stdout


def test_bad_setting_exits_2_with_one_line() -> None:
    line = assert_one_line_error(run_cli("generate", POKEMON_MAX_INDEX="-1"), 2)
    assert "POKEMON_MAX_INDEX" in line


def test_bad_arguments_exit_2_with_one_line() -> None:
    assert "--seed" in assert_one_line_error(run_cli("generate", "--seed", "-5"), 2)
    assert "--url" in assert_one_line_error(run_cli("generate", "--token", "t"), 2)


@pytest.mark.parametrize("command", [[], ["generate"], ["batch"], ["serve"], ["certs"]])
def test_help_everywhere(command: list[str]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_certs_writes_cert_and_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "c" / "cert.pem", tmp_path / "c" / "key.pem"
    args = ("certs", "--cert", str(cert), "--key", str(key), "--host", "localhost")
    assert run_cli(*args).returncode == 0
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in key.read_text()
    assert run_cli(*args).returncode == 1  # refuses to overwrite ...
    assert run_cli(*args, "--force").returncode == 0  # ... unless told to


def test_version_through_the_entry_point() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"pokemon {version()}\n"


def test_light_commands_leave_the_web_stack_unloaded() -> None:
    # --help, --version and the remote commands start in a blink only if the server's stack stays out.
    script = f"""
import sys
from handlers.cli import main
for argv in (["--help"], ["--version"]):
    try:
        main(argv)
    except SystemExit:
        pass
main(["generate", "--url", "http://127.0.0.1:{free_port()}"])
print(sorted({{name.split(".")[0] for name in sys.modules}} & {{"starlette", "fastapi", "uvicorn"}}))
"""
    result = python_ok("-c", script)
    assert result.stdout.splitlines()[-1] == "[]"


def _service_with_fixed_id_and_clock() -> CreatureService:
    """Two calls with one seed give the very same creature, id and timestamp included."""
    settings = load_settings(images_dir=SHIPPED_IMAGES)
    return CreatureService(
        names=wiring.build_name_source(settings),
        images=wiring.build_image_source(settings),
        rarity=RarityTable(settings.rarity_weights),
        clock=lambda: 0.0,
        new_id=lambda: "pkm_FIXED0000000",
    )


def test_in_process_client_takes_the_creature_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    service = _service_with_fixed_id_and_clock()
    creature = asyncio.run(service.generate(7))

    def no_parsing(*args: object, **kwargs: object) -> object:
        raise AssertionError("the in-process path parsed JSON")

    monkeypatch.setattr(json, "loads", no_parsing)
    generated = asyncio.run(InProcessClient(service).generate(7))
    assert generated.image == base64.b64decode(creature.image.base64_image) == creature.image.raw()
    assert generated.image.startswith(b"\x89PNG")
    assert generated.metadata == creature.metadata()
    assert generated.generated_at == creature.generated_at
    assert generated.wire == creature.to_json_bytes()  # what --json prints: the API's wire form


def test_batch_summary_orders_rarities_as_the_domain_does(tmp_path: Path) -> None:
    result = BatchResult(rarities=Counter({"S+": 2, "A": 3, "F": 1}))
    rarity_line = summary_lines(result, elapsed=1.0, directory=tmp_path)[1]
    assert rarity_line.split()[1::2] == [rarity.value for rarity in Rarity]
    assert rarity_line == "  rarity   F 1  E 0  D 0  C 0  B 0  A 3  S 0  S+ 2"


def test_in_process_batch_counts_s_plus_as_s_plus(tmp_path: Path) -> None:
    # In-process metadata holds `Rarity` members, which hash by member name (S_PLUS): they must still count
    # under the tier's text.
    settings = load_settings(images_dir=SHIPPED_IMAGES, rarity_weights="F=0,E=0,D=0,C=0,B=0,A=0,S=0,S+=1")
    client = InProcessClient(wiring.build_service(settings))
    progress = Progress(3, io.StringIO())
    run = run_batch(client, count=3, directory=tmp_path, concurrency=2, seed_start=None, progress=progress)
    result = asyncio.run(run)
    assert result.rarities == Counter({"S+": 3})
    assert summary_lines(result, elapsed=1.0, directory=tmp_path)[1].endswith("S 0  S+ 3")
    sidecar = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert sidecar["metadata"]["rarity"] == "S+"


# ------------------------------------------------------------------------------------------ remote


def test_unreachable_url_exits_1_with_one_line() -> None:
    line = assert_one_line_error(run_cli("generate", "--url", f"http://127.0.0.1:{free_port()}"), 1)
    assert "cannot connect" in line


def test_generate_against_a_tls_server(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "0"}, tls=True)
    out = tmp_path / "remote.png"
    result = run_cli("generate", "--url", server.base_url, "--insecure", "--json", "--seed", "42", "--out", str(out))
    assert result.returncode == 0, result.stderr
    remote = json.loads(result.stdout)
    assert set(remote) == CONTRACT_KEYS
    with Image.open(out) as image:
        assert image.format == "PNG"
    # Server and in-process mode run the same code: the same seed gives the same creature.
    local = json.loads(run_cli("generate", "--json", "--seed", "42").stdout)
    assert (remote["metadata"]["name"], remote["metadata"]["rarity"]) == (
        local["metadata"]["name"],
        local["metadata"]["rarity"],
    )
    # Without --insecure the self-signed certificate is refused, with a hint.
    line = assert_one_line_error(run_cli("generate", "--url", server.base_url), 1)
    assert "--insecure" in line


def test_auth_against_a_server(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_BEARER_TOKEN": "s3cret", "POKEMON_RATE_LIMIT_PER_MIN": "0"})
    line = assert_one_line_error(run_cli("generate", "--url", server.base_url), 1)
    assert "A bearer token is required." in line
    assert "UNAUTHORIZED" in line
    line = assert_one_line_error(run_cli("generate", "--url", server.base_url, "--token", "wrong"), 1)
    assert "invalid" in line
    assert run_cli("generate", "--url", server.base_url, "--token", "s3cret").returncode == 0
    assert run_cli("generate", "--url", server.base_url, POKEMON_TOKEN="s3cret").returncode == 0


def test_batch_against_a_server(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "0"})
    out = tmp_path / "batch"
    result = run_cli("batch", "-n", "12", "--concurrency", "4", "--out", str(out), "--url", server.base_url)
    assert result.returncode == 0, result.stderr
    pngs, sidecars = sorted(out.glob("*.png")), sorted(out.glob("*.json"))
    assert len(pngs) == 12
    assert [path.stem for path in pngs] == [path.stem for path in sidecars]
    sidecar = json.loads(sidecars[0].read_text())
    assert set(sidecar) == {"metadata", "generatedAt"}
    assert sidecar["metadata"]["id"] == sidecars[0].stem
    assert "12 created, 0 failed" in result.stdout
    rarity_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("rarity"))
    counts = rarity_line.split()[1:]
    assert counts[::2] == list(RARITIES)  # every tier, F to S+, in order
    assert sum(int(count) for count in counts[1::2]) == 12
    assert "creatures/s" in result.stdout


def test_rate_limited_batch_reports_failures(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "3"})
    out = tmp_path / "batch"
    result = run_cli("batch", "-n", "8", "--concurrency", "2", "--out", str(out), "--url", server.base_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "3 created, 5 failed" in result.stdout
    assert "RATE_LIMITED" in result.stderr
    assert "Retry-After" in result.stderr
    assert len(list(out.glob("*.png"))) == 3
