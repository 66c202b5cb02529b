"""The `pokemon` command as a child process, with a clean environment."""

from __future__ import annotations

import subprocess
import sys

from tests.support.environment import clean_environment
from tests.support.paths import REPO, SHIPPED_IMAGES


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m handlers.cli ARGS` with only the settings given here (plus the shipped images)."""
    environment = clean_environment(POKEMON_IMAGES_DIR=str(SHIPPED_IMAGES), **env)
    # POKEMON_TOKEN is ours too but not a server setting, so clean_environment's prefixes already drop it.
    return subprocess.run(
        [sys.executable, "-m", "handlers.cli", *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
