"""Schemathesis fuzzes the live server from its own OpenAPI document: every answer must match it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ServerFactory


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"POKEMON_RATE_LIMIT_PER_MIN": "0"}, id="open"),
        pytest.param({"POKEMON_BEARER_TOKEN": "fuzz-token", "POKEMON_RATE_LIMIT_PER_MIN": "30"}, id="auth-and-limit"),
    ],
)
def test_the_api_conforms_to_its_schema(server_factory: ServerFactory, tmp_path: Path, env: dict[str, str]) -> None:
    server = server_factory(env)
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        # Nothing here creates or deletes resources, so the stateful resource checks have nothing to say.
        "use_after_free,ensure_resource_availability",
        "--max-examples",
        "60",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-deterministic",
        "--no-color",
    ]
    if "POKEMON_BEARER_TOKEN" in env:
        command += ["--header", f"Authorization: Bearer {env['POKEMON_BEARER_TOKEN']}"]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
