"""`pokemon generate/batch --format --size --raw`: the file's bytes, extension and pixel size, in-process and remote."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from core.creature import ImageFormat
from handlers.cli.client import GeneratedCreature, HttpClient, ImageChoice
from handlers.cli.errors import CliError
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.fake_llm import FakeLLM
from tests.support.image_magic import magic_format
from tests.support.ports import free_port
from tests.support.server import ServerFactory, ServerProcess

PILLOW_NAMES = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}
EXTENSIONS = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
NO_LIMIT = {"POKEMON_RATE_LIMIT_PER_MIN": "0"}


def assert_image(path: Path, fmt: str, size: tuple[int, int] | None = None) -> None:
    assert path.is_file(), path
    assert magic_format(path.read_bytes()) == fmt, path
    with Image.open(path) as image:
        image.load()  # decodes the whole file: a truncated one fails here
        assert image.format == PILLOW_NAMES[fmt]
        if size is not None:
            assert image.size == size


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ in-process


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_generate_writes_the_format_at_the_size(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"creature{EXTENSIONS[fmt]}"
    result = run_cli("generate", "--seed", "11", "--format", fmt, "--size", "96", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert_image(out, fmt, (96, 96))
    assert f"  image    {out} ({fmt} 96x96, {out.stat().st_size} bytes)" in result.stdout.splitlines()


def test_json_says_the_format_and_size(tmp_path: Path) -> None:
    out = tmp_path / "c.webp"
    result = run_cli("generate", "--json", "--seed", "11", "--format", "webp", "--size", "64", "--out", str(out))
    assert result.returncode == 0, result.stderr
    metadata = json.loads(result.stdout)["metadata"]  # stdout stays one JSON document
    assert (metadata["imageFormat"], metadata["imageWidth"], metadata["imageHeight"]) == ("webp", 64, 64)
    assert_image(out, "webp", (64, 64))


@pytest.mark.parametrize(
    ("out", "extra", "written", "fmt"),
    [
        ("c.webp", [], "c.webp", "webp"),  # the extension picks the format when --format is not given
        ("c.JPEG", [], "c.JPEG", "jpeg"),
        ("c.jpg", ["--format", "jpeg"], "c.jpg", "jpeg"),
        ("plain", ["--format", "webp"], "plain.webp", "webp"),  # no extension: the format's is added
        ("plain", [], "plain.png", "png"),
    ],
)
def test_out_file_and_extension(tmp_path: Path, out: str, extra: list[str], written: str, fmt: str) -> None:
    result = run_cli("generate", "--seed", "3", "--out", str(tmp_path / out), *extra)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [written]
    assert_image(tmp_path / written, fmt)


def test_out_folder_gets_id_and_extension(tmp_path: Path) -> None:
    new_folder = tmp_path / "new"  # a trailing slash makes a folder of a path that does not exist yet
    result = run_cli("generate", "--format", "jpeg", "--size", "40", "--out", f"{new_folder}/")
    assert result.returncode == 0, result.stderr
    (written,) = new_folder.iterdir()
    assert re.fullmatch(r"pkm_[A-Z0-9]{12}\.jpg", written.name)
    assert written.stem in result.stdout
    assert_image(written, "jpeg", (40, 40))
    result = run_cli("generate", "--format", "webp", "--out", str(tmp_path))  # an existing folder
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("pkm_*.webp"))) == 1


def test_raw_without_out_saves_id_dot_ext_in_the_current_folder(tmp_path: Path) -> None:
    result = run_cli("generate", "--raw", "--format", "webp", "--size", "48", "--seed", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(r"pkm_[A-Z0-9]{12}\.webp", written.name)
    assert_image(written, "webp", (48, 48))
    assert not list(tmp_path.glob("*.json"))  # the image only
    # Without --raw and --out nothing is written.
    assert run_cli("generate", "--format", "webp", cwd=tmp_path).returncode == 0
    assert len(list(tmp_path.iterdir())) == 1


def test_formats_keep_the_creature(tmp_path: Path) -> None:
    summaries = []
    for fmt in ("png", "webp", "jpeg"):
        result = run_cli("generate", "--seed", "77", "--format", fmt, "--size", "32")
        assert result.returncode == 0, result.stderr
        summaries.append(result.stdout.splitlines()[0])  # "Name  [rarity]"
    assert len(set(summaries)) == 1


def test_batch_writes_the_chosen_format(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    result = run_cli("batch", "-n", "4", "--format", "webp", "--size", "64", "--seed-start", "9", "--out", str(out))
    assert result.returncode == 0, result.stderr
    images, sidecars = sorted(out.glob("*.webp")), sorted(out.glob("*.json"))
    assert len(images) == 4
    assert not list(out.glob("*.png"))
    assert [path.stem for path in images] == [path.stem for path in sidecars]
    for image in images:
        assert_image(image, "webp", (64, 64))
    sidecar = json.loads(sidecars[0].read_text())["metadata"]
    assert (sidecar["imageFormat"], sidecar["imageWidth"], sidecar["imageHeight"]) == ("webp", 64, 64)


# Each with --url to a closed port: exit 2, not "cannot connect" (1), shows that it is refused before any request.
@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["generate", "--format", "PNG"], "format must be one of png, webp, jpeg"),
        (["generate", "--format", "gif"], "format must be one of png, webp, jpeg"),
        (["generate", "--size", "31"], "size must be an integer from 32 to 2048"),
        (["generate", "--size", "2049"], "size must be an integer from 32 to 2048"),
        (["generate", "--size", "1e3"], "size must be an integer from 32 to 2048"),
        (["generate", "--out", "x.gif"], "ends with one of .png, .webp, .jpg, .jpeg"),
        (["generate", "--format", "webp", "--out", "x.png"], "does not match --format webp (use .webp)"),
        (["generate", "--format", "jpeg", "--out", "x.webp"], "(use .jpg or .jpeg)"),
        (["generate", "--raw", "--json"], "--raw saves the image only"),
        (["batch", "--out", "unused", "--format", "jpg"], "format must be one of png, webp, jpeg"),
        (["batch", "--out", "unused", "--size", "0"], "size must be an integer from 32 to 2048"),
    ],
)
def test_bad_format_size_and_out_exit_2_with_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    line = assert_one_line_error(run_cli(*args, "--url", closed, cwd=tmp_path), 2)
    assert says in line
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made


# ------------------------------------------------------------------------------------------ remote


@pytest.fixture(name="server")
def server_fixture(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(NO_LIMIT)


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_remote_generate_writes_the_format(server: ServerProcess, tmp_path: Path, fmt: str, raw: bool) -> None:
    out = tmp_path / f"remote{EXTENSIONS[fmt]}"
    flags = ["--raw"] if raw else []
    result = run_cli("generate", "--url", server.base_url, *flags, "--seed", "21", "--format", fmt, "--size", "128",
                     "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_image(out, fmt, (128, 128))
    # The server and this process encode alike: the same seed, format and size give the very same bytes.
    local = tmp_path / f"local{EXTENSIONS[fmt]}"
    assert run_cli("generate", "--seed", "21", "--format", fmt, "--size", "128", "--out", str(local)).returncode == 0
    assert out.read_bytes() == local.read_bytes()


def test_remote_batch_writes_the_format(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "batch"
    result = run_cli(
        "batch", "-n", "5", "--url", server.base_url, "--format", "jpeg", "--size", "50", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    images = sorted(out.glob("*.jpg"))
    assert len(images) == 5
    assert len(list(out.glob("*.json"))) == 5
    for image in images:
        assert_image(image, "jpeg", (50, 50))


def test_raw_client_reads_the_image_answer(server: ServerProcess) -> None:
    # The raw path asks for the image (Accept: image/webp): no JSON comes back, the creature is in headers.
    async def fetch() -> tuple[GeneratedCreature, GeneratedCreature]:
        client = HttpClient(server.base_url, token=None, insecure=False, timeout=10, raw=True,
                            image=ImageChoice(ImageFormat.WEBP, 64))  # fmt: skip
        try:
            raw = await client.generate(8)
        finally:
            await client.aclose()
        json_client = HttpClient(server.base_url, token=None, insecure=False, timeout=10,
                                 image=ImageChoice(ImageFormat.WEBP, 64))  # fmt: skip
        try:
            wire = await json_client.generate(8)
        finally:
            await json_client.aclose()
        return raw, wire

    raw, wire = asyncio.run(fetch())
    assert raw.wire is None
    assert wire.wire is not None
    assert raw.image == wire.image
    assert raw.image_format is ImageFormat.WEBP
    for key in ("id", "name", "rarity", "seed", "nameSource", "imageSource", "imageFormat"):
        if key != "id":  # ids are fresh on every call
            assert raw.metadata[key] == wire.metadata[key], key
    assert raw.metadata["seed"] == 8


def test_raw_remote_round_trips_a_non_ascii_name(llm: FakeLLM, server_factory: ServerFactory, tmp_path: Path) -> None:
    name = "Khra'gzéthon"
    llm.set("clean", names=[name])
    server = server_factory(
        {
            **NO_LIMIT,
            "POKEMON_NAME_BACKEND": "remote",
            "OPENAI_BASE_URL": llm.base_url,
            "POKEMON_NAME_POOL_SIZE": "4",
            "POKEMON_NAME_CONCURRENCY": "1",
        }
    )
    wait_for(lambda: llm.stats()["chat_requests"] >= 4)
    with server.client() as client:  # the X-Creature-Name header is percent-encoded on the wire
        wait_for(lambda: client.get("/health").json()["status"] == "ok")
        head = client.get("/v1/generate", headers={"Accept": "image/webp"})
        assert head.headers["x-creature-name"] == "Khra%27gz%C3%A9thon"
    out = tmp_path / "out"
    result = run_cli("generate", "--url", server.base_url, "--raw", "--format", "webp", "--out", f"{out}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(f"{name}  [")
    assert "name=remote" in result.stdout
    assert "(webp, " in result.stdout  # the image answer's headers carry no pixel size: the raw path was taken
    (written,) = out.iterdir()
    assert_image(written, "webp")


def test_raw_errors_stay_one_line(server_factory: ServerFactory) -> None:
    server = server_factory({**NO_LIMIT, "POKEMON_BEARER_TOKEN": "s3cret"})
    line = assert_one_line_error(run_cli("generate", "--url", server.base_url, "--raw", "--format", "jpeg"), 1)
    assert "UNAUTHORIZED" in line
    assert "HTTP 401" in line


# ------------------------------------------------------------------------------------------ answers we refuse

GOOD_HEADERS = {
    "content-type": "image/webp",
    "x-creature-id": "pkm_ABCDEFGHIJKL",
    "x-creature-name": "Pik%C3%A9lou",
    "x-creature-rarity": "S+",
    "x-creature-seed": "7",
    "x-creature-name-source": "remote",
    "x-creature-image-source": "files",
    "x-creature-generated-at": "2025-11-12T20:41:32Z",
}


def image_answer(**changes: str | None) -> httpx.Response:
    headers = {**GOOD_HEADERS, **changes}
    return httpx.Response(200, headers={k: v for k, v in headers.items() if v is not None}, content=b"RIFF....WEBP")


def test_the_image_answer_is_read_from_its_headers() -> None:
    creature = GeneratedCreature.from_image_response(image_answer(), ImageFormat.WEBP)
    assert creature.metadata == {
        "id": "pkm_ABCDEFGHIJKL",
        "name": "Pikélou",
        "rarity": "S+",
        "seed": 7,
        "nameSource": "remote",
        "imageSource": "files",
        "imageFormat": "webp",
    }
    assert (creature.generated_at, creature.image, creature.wire) == ("2025-11-12T20:41:32Z", b"RIFF....WEBP", None)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"content-type": "image/png"}, "asked for a webp image, the server sent png"),
        ({"content-type": "image/gif"}, "'gif' is not png, webp or jpeg"),
        ({"content-type": "text/html; charset=utf-8"}, "neither JSON nor an image (Content-Type: text/html)"),
        ({"x-creature-seed": None}, "lacks the x-creature-seed header"),
        ({"x-creature-name": "Bad%FFname"}, "X-Creature-Name or X-Creature-Seed is malformed"),
        ({"x-creature-seed": "seven"}, "X-Creature-Name or X-Creature-Seed is malformed"),
    ],
)
def test_a_strange_image_answer_is_one_clear_error(changes: dict[str, str | None], says: str) -> None:
    with pytest.raises(CliError, match=re.escape(says)):
        GeneratedCreature.from_image_response(image_answer(**changes), ImageFormat.WEBP)


def test_a_json_answer_in_another_format_is_refused() -> None:
    # A server from before formats ignores ?format= and sends a PNG without imageFormat: fine when a PNG was
    # asked for, an error (not a PNG saved as .webp) otherwise.
    old = json.dumps({"imageBase64": "iVBORw0KGgo=", "metadata": {"id": "pkm_X"}, "generatedAt": "t"}).encode()
    assert GeneratedCreature.from_wire(old, ImageFormat.PNG).image_format is ImageFormat.PNG
    with pytest.raises(CliError, match="asked for a webp image, the server sent png"):
        GeneratedCreature.from_wire(old, ImageFormat.WEBP)
