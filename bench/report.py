"""What every benchmark reports besides its figures, and how it ends: the machine and versions it ran on, the
table printed, the figures saved with `--json`, and the exit status they share (bench/README.md):

    0 a valid run (PASS or MISS), 1 INVALID (requests or a step failed), 2 could not run, 3 MISS with --fail-on-miss
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BenchError
from bench.wrk import wrk_version


def versions(*packages: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        **versions("uvicorn", "fastapi", "starlette", "uvloop", "httptools"),
        "wrk": wrk_version(),
        "cpu_count": os.cpu_count(),
        "cpus_available": sorted(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished run: its table, its figures (built only when `--json` asks for them) and its verdicts."""

    table: str
    figures: Callable[[], object]
    valid: bool
    missed: bool


def outcome_of(report: dict[str, object], render: Callable[[dict[str, object]], str]) -> Outcome:
    """The outcome of a benchmark whose report is one JSON document with `valid` and `verdict`."""
    return Outcome(render(report), lambda: report, bool(report["valid"]), report["verdict"] == "MISS")


def finish(name: str, measure: Callable[[], Outcome], *, json_path: Path | None, fail_on_miss: bool) -> int:
    """Runs a benchmark, prints its table, saves its figures; returns the exit status."""
    try:
        outcome = measure()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    print(outcome.table)
    if json_path is not None:
        json_path.write_text(json.dumps(outcome.figures(), indent=2) + "\n")
        print(f"figures written to {json_path}")
    if not outcome.valid:
        return 1
    if fail_on_miss and outcome.missed:
        return 3
    return 0
