"""The `pokemon` command as a child process, with a clean environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.paths import REPO, SHIPPED_IMAGES
from tests.support.python_child import run_python


def run_cli(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m handlers.cli ARGS` from `cwd` with only the settings given here (plus the shipped images)."""
    # POKEMON_TOKEN is ours too but not a server setting, so clean_environment's prefixes already drop it.
    settings = {"POKEMON_IMAGES_DIR": str(SHIPPED_IMAGES), **env}
    return run_python("-m", "handlers.cli", *args, cwd=cwd, stdin=None, timeout=60, **settings)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The exit status, and the one line a user reads instead of a traceback; returns that line."""
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
