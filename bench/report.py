"""What every benchmark reports besides its figures, and how it ends: the machine and versions it ran on, the
table printed, the figures saved with `--json`, and the exit status they share (bench/README.md):

    0 a valid run (PASS or MISS), 1 INVALID (requests or a step failed), 2 could not run, 3 MISS with --fail-on-miss
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.harness import BenchError
from bench.wrk import WrkResult, round_ratios, wrk_version


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


def load_figures(args: argparse.Namespace, **load: object) -> dict[str, object]:
    """How a round-based run was loaded: its rounds and timing, what else shaped the load, and the CPUs pinned."""
    return {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        **load,
        "server_cpu": args.server_cpu,
        "wrk_cpu": args.wrk_cpu,
    }


def ratio_figures(ratio_key: str, before: list[WrkResult], after: list[WrkResult], target: float) -> dict[str, object]:
    """The verdict on `after` against `before`: the median of each `after` round's throughput over the `before`
    round just before it, which cancels most of the drift a long run picks up, against `target`."""
    ratios = round_ratios(before, after)
    ratio = statistics.median(ratios)
    errors = sum(result.errors for result in before + after)
    return {
        "valid": errors == 0,
        ratio_key: ratio,
        "per_round_ratios": ratios,
        "target_ratio": target,
        # Failed requests are cheap, so a run with errors would flatter the loaded side: no verdict then.
        "verdict": "INVALID" if errors else ("PASS" if ratio >= target else "MISS"),
    }


def wrk_table(heading: str, width: int, rows: dict[str, dict[str, float]]) -> str:
    """The medians `bench.wrk.summarize` keeps, one row per label (a server or a path) `width` wide."""
    lines = [
        f"{heading:<{width}} {'req/s (median)':>15} {'p50 ms':>9} {'p99 ms':>9} {'errors':>8}\n",
        f"{'-' * width} {'-' * 15} {'-' * 9} {'-' * 9} {'-' * 8}\n",
    ]
    for label, row in rows.items():
        lines.append(
            f"{label:<{width}} {row['median_requests_per_s']:>15.1f} {row['median_p50_ms']:>9.2f}"
            f" {row['median_p99_ms']:>9.2f} {int(row['errors']):>8}\n"
        )
    return "".join(lines)


def ratio_lines(what: str, ratio: float, report: dict[str, object]) -> str:
    """The median per-round ratio against the target, the ratios it is the median of, and whether they count."""
    ratios = ", ".join(f"{value:.3f}" for value in report["per_round_ratios"])  # type: ignore[attr-defined]
    text = (
        f"\n{what} throughput: {ratio:.3f}×  (target ≥ {report['target_ratio']:.2f}×)  {report['verdict']}\n"
        f"  per-round ratios: {ratios}\n"
    )
    if not report["valid"]:
        text += "  INVALID RUN: some requests failed (non-2xx or socket errors); the figures do not count\n"
    return text


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
