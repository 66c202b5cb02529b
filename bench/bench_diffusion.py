"""What micro-batching buys: `/v1/generate` on the `sdxl` backend at concurrency 1 and 8, on CPU, with wrk.

    .venv/bin/python -m bench.bench_diffusion [--rounds 3] [--duration 5] [--size 64] [--max-batch 1] [--json PATH]

Builds the tiny random SDXL pipeline of tests/support/tiny_sdxl.py into a temporary folder and starts the real
service on it (`python -m handlers.server`, POKEMON_GENERATION_BACKEND=sdxl, POKEMON_DIFFUSION_DEVICE=cpu), so the
request goes through the real loader, batcher, pipeline call and PNG encoding. The server is pinned to
CPU 0 and `wrk -t1` to CPU 1; rounds alternate -c1, -c8, -c1, -c8, … and each -c8 round is divided by
the -c1 round just before it (target ≥ 2×). The batch sizes come from the server's own `sdxl.generate`
log lines, read per round, so the table shows what the batcher actually did at each concurrency.
`--max-batch 1` turns batching off (POKEMON_MAX_BATCH=1) to show the difference. Only 127.0.0.1 is
contacted; HF_HUB_OFFLINE=1. See bench/README.md.

Exit status: 0 done, 1 INVALID (failed requests or fallback images), 2 could not run, 3 MISS with
--fail-on-miss.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.harness import BenchError, Processes, Server, require_cpus, setting
from bench.report import Outcome, environment, finish, load_figures, outcome_of, versions
from bench.sdxl_service import Batches, build_tiny_pipeline, format_distribution, measure_wrk, probe, start_service
from bench.wrk import WrkResult, require_wrk, run_wrk

TARGET_SPEEDUP = 2.0
CONCURRENCIES = (1, 8)


# --- the measurement ----------------------------------------------------------------------------


@dataclass
class Level:
    """Everything measured at one concurrency."""

    connections: int
    results: list[WrkResult] = field(default_factory=list)
    batches: Batches = field(default_factory=Batches)

    def median(self, name: str) -> float:
        return float(statistics.median(getattr(result, name) for result in self.results))

    @property
    def errors(self) -> int:
        return sum(result.errors for result in self.results)


def measure(service: Server, args: argparse.Namespace) -> dict[int, Level]:
    levels = {connections: Level(connections) for connections in CONCURRENCIES}
    for connections in CONCURRENCIES:
        # Warm-up: the allocator, the PNG encoder and torch's per-shape caches settle before anything counts.
        run_wrk(service.port, connections=connections, seconds=args.warmup, cpu=args.wrk_cpu)
    for index in range(1, args.rounds + 1):
        for connections in CONCURRENCIES:
            result, batches = measure_wrk(service, connections=connections, seconds=args.duration, cpu=args.wrk_cpu)
            level = levels[connections]
            level.results.append(result)
            level.batches.extend(batches)
            flag = f"  ERRORS {result.errors}" if result.errors else ""
            flag += f"  FALLBACKS {batches.fallbacks}" if batches.fallbacks else ""
            print(
                f"  round {index}/{args.rounds} -c{connections:<2} {result.requests_per_s:8.1f} req/s"
                f"  p50 {result.p50_ms:8.1f} ms  p99 {result.p99_ms:8.1f} ms"
                f"  batch mean {batches.mean_size:4.2f}{flag}",
                flush=True,
            )
    return levels


# --- report -------------------------------------------------------------------------------------


def build_report(levels: dict[int, Level], args: argparse.Namespace, extras: dict[str, object]) -> dict[str, object]:
    low, high = levels[CONCURRENCIES[0]], levels[CONCURRENCIES[-1]]
    ratios = [b.requests_per_s / a.requests_per_s for a, b in zip(low.results, high.results, strict=True)]
    ratio = statistics.median(ratios)
    errors = sum(level.errors for level in levels.values())
    fallbacks = sum(level.batches.fallbacks for level in levels.values())
    invalid = errors > 0 or fallbacks > 0
    return {
        "valid": not invalid,
        # Failed requests and files fallbacks are cheap, so they would flatter the run: no verdict then.
        "verdict": "INVALID" if invalid else ("PASS" if ratio >= TARGET_SPEEDUP else "MISS"),
        "ratio_c8_over_c1": ratio,
        "per_round_ratios": ratios,
        "target_ratio": TARGET_SPEEDUP,
        "levels": {
            str(level.connections): {
                "median_requests_per_s": level.median("requests_per_s"),
                "median_p50_ms": level.median("p50_ms"),
                "median_p99_ms": level.median("p99_ms"),
                "errors": level.errors,
                "batch_mean": level.batches.mean_size,
                "batch_sizes": level.batches.distribution(),
                "batch_ms_median": statistics.median(level.batches.durations_ms)
                if level.batches.durations_ms
                else None,
                "fallback_batches": level.batches.fallbacks,
                "rounds": [asdict(result) for result in level.results],
            }
            for level in levels.values()
        },
        "settings": {
            "size": args.size,
            "max_batch": args.max_batch if args.max_batch is not None else "8 (service default)",
            "extra": dict(args.env),
        },
        "load": load_figures(args),
        **extras,
        "environment": environment(),
    }


def render(report: dict[str, object]) -> str:
    levels: dict[str, dict[str, object]] = report["levels"]  # type: ignore[assignment]
    settings: dict[str, object] = report["settings"]  # type: ignore[assignment]
    load: dict[str, object] = report["load"]  # type: ignore[assignment]
    env: dict[str, object] = report["environment"]  # type: ignore[assignment]
    out = io.StringIO()
    out.write("\n")
    out.write(f"{'load':<5} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'batch':>6}  batch sizes run\n")
    out.write(f"{'-' * 5} {'-' * 8} {'-' * 9} {'-' * 9} {'-' * 7} {'-' * 6}  {'-' * 24}\n")
    for name, row in levels.items():
        sizes: dict[int, int] = row["batch_sizes"]  # type: ignore[assignment]
        out.write(
            f"{'-c' + name:<5} {row['median_requests_per_s']:>8.1f} {row['median_p50_ms']:>9.1f}"
            f" {row['median_p99_ms']:>9.1f} {row['errors']:>7} {row['batch_mean']:>6.2f}"
            f"  {format_distribution(sizes)}  (size:batches)\n"
        )
    ratios = ", ".join(f"{value:.2f}" for value in report["per_round_ratios"])  # type: ignore[attr-defined]
    out.write(
        f"\nc8/c1 throughput: {report['ratio_c8_over_c1']:.2f}×  (target ≥ {TARGET_SPEEDUP:.0f}×)"
        f"  {report['verdict']}\n"
    )
    out.write(f"  per-round ratios: {ratios}\n")
    if not report["valid"]:
        out.write("  INVALID RUN: failed requests or fallback (files) images; the figures do not count\n")
    out.write(
        f"\nservice: sdxl backend, tiny random SDXL pipeline (tests/support/tiny_sdxl.py),"
        f" {settings['size']}×{settings['size']},"
        f" POKEMON_DIFFUSION_DEVICE=cpu, POKEMON_MAX_BATCH={settings['max_batch']},"
        f" response ~{report['response_bytes']} bytes,"
        f" ready {report['ready_s']:.1f} s after start\n"
    )
    if settings["extra"]:
        out.write(f"service settings overridden: {settings['extra']}\n")
    out.write(
        f"load: wrk -t1 --latency, -c1/-c8 alternating, {load['rounds']} rounds × {load['duration_s']} s"
        f" (+{load['warmup_s']} s warm-up each), server on CPU {load['server_cpu']}, wrk on CPU {load['wrk_cpu']}\n"
    )
    out.write(
        f"environment: Python {env['python']}, torch {report['torch']}, diffusers {report['diffusers']}, {env['wrk']},"
        f" {env['cpu_count']} cores ({env['cpu_model']})\n"
    )
    return out.getvalue()


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_diffusion",
        description="Throughput of GET /v1/generate on the sdxl backend (tiny pipeline, CPU) at -c1 and -c8.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating -c1/-c8 rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and concurrency (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per concurrency (default 2)")
    parser.add_argument("--size", type=int, default=64, help="POKEMON_IMAGE_WIDTH and _HEIGHT (default 64)")
    parser.add_argument("--max-batch", type=int, help="POKEMON_MAX_BATCH for the service (default: its own, 8)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the service is pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument(
        "--env", action="append", default=[], type=setting, metavar="KEY=VALUE", help="an extra service setting"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when c8/c1 misses the target")
    args = parser.parse_args(argv)
    if min(args.rounds, args.duration, args.warmup) < 1:
        parser.error("--rounds, --duration and --warmup must be ≥ 1")
    if args.size < 64 or args.size % 8:
        parser.error("--size must be a multiple of 8, at least 64 (the service's own limits)")
    if args.max_batch is not None and args.max_batch < 1:
        parser.error("--max-batch must be ≥ 1")
    return args


def check_prerequisites(args: argparse.Namespace) -> None:
    require_wrk()
    require_cpus(args.server_cpu, args.wrk_cpu)
    probe_imports = "import torch, diffusers; print(torch.__version__, diffusers.__version__)"
    completed = subprocess.run(
        [sys.executable, "-c", probe_imports], capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        raise BenchError("torch and diffusers are needed: pip install -e '.[diffusion]' (see README)")


def run(args: argparse.Namespace) -> dict[str, object]:
    processes = Processes()
    overrides = dict(args.env)
    if args.max_batch is not None:
        overrides["POKEMON_MAX_BATCH"] = str(args.max_batch)
    with tempfile.TemporaryDirectory(prefix="pokemon-bench-diffusion-") as folder:
        scratch = Path(folder)
        began = time.monotonic()
        model = build_tiny_pipeline(scratch / "tiny-sdxl")
        print(f"tiny pipeline built in {time.monotonic() - began:.1f} s", flush=True)
        try:
            service, ready_s = start_service(
                processes,
                scratch,
                name="service",
                model=model,
                width=args.size,
                height=args.size,
                device="cpu",
                cpu=args.server_cpu,
                overrides=overrides,
            )
            response_bytes = probe(service, args.size, args.size)
            print(f"service up on :{service.port} (pid {service.process.pid}), ready after {ready_s:.1f} s", flush=True)
            levels = measure(service, args)
        finally:
            processes.stop_all()
        extras: dict[str, object] = {
            "response_bytes": response_bytes,
            "ready_s": ready_s,
            **versions("torch", "diffusers"),
        }
        return build_report(levels, args, extras)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def measure() -> Outcome:
        check_prerequisites(args)
        return outcome_of(run(args), render)

    return finish("bench_diffusion", measure, json_path=args.json, fail_on_miss=args.fail_on_miss)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
