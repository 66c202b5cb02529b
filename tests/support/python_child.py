"""Python as a child process from the repository root, with none of the test process's settings.

A fresh interpreter is what start-up checks need (which modules a first import loads) and what runs the code
as a user or Lambda would; the clean environment keeps the developer's own settings out of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.environment import clean_environment
from tests.support.paths import REPO


def run_python(
    *argv: str, cwd: Path = REPO, stdin: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python ARGV` (`-c CODE ...` or `-m MODULE ...`) from `cwd`, with only the settings in `env`."""
    return _run(argv, cwd, stdin, env, timeout)


def python_ok(*argv: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`run_python` from the repository root that must exit 0; a failure shows the child's own traceback."""
    completed = _run(argv, REPO, stdin, env, 60)
    assert completed.returncode == 0, completed.stderr
    return completed


def _run(
    argv: tuple[str, ...], cwd: Path, stdin: str | None, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        input=stdin,
        cwd=cwd,
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
