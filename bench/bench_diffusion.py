"""What micro-batching buys: `/v1/generate` on the `sdxl` backend at concurrency 1 and 8, on CPU, with wrk.

    .venv/bin/python bench/bench_diffusion.py [--rounds 3] [--duration 5] [--size 64] [--max-batch 1] [--json PATH]

Builds the tiny random SDXL pipeline of tests/tiny_sdxl.py into a temporary folder and starts the real
service on it (`python -m handlers.server`, POKEMON_GENERATION_BACKEND=sdxl, SDXL_DEVICE=cpu), so the
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
import base64
import contextlib
import importlib.metadata
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import (
    HOST,
    REPO,
    BenchError,
    Processes,
    WrkResult,
    base_env,
    environment,
    finish,
    free_port,
    http_get,
    run_wrk,
    wait_healthy,
)

TARGET_SPEEDUP = 2.0
CONCURRENCIES = (1, 8)
READY_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 600.0
# After wrk stops, requests still in flight finish and log; the log is read once it has been quiet this
# long, so that a round's batches are not counted in the next round.
LOG_QUIET_S = 0.3
LOG_SETTLE_MAX_S = 10.0

_BUILD_TINY = (
    "import sys; from pathlib import Path; from tests.tiny_sdxl import build_tiny_sdxl;"
    " build_tiny_sdxl(Path(sys.argv[1]))"
)


# --- the pipeline and the service ---------------------------------------------------------------


def build_tiny_pipeline(folder: Path) -> Path:
    """tests/tiny_sdxl.py's pipeline, built in a child process.

    A child, so that this process never imports torch: its thread pools would make the fork behind
    every pinned `Popen(preexec_fn=...)` unsafe, and the import alone costs seconds.
    """
    env = {**base_env(), "HF_HUB_OFFLINE": "1"}
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _BUILD_TINY, str(folder)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"building the tiny pipeline took over {BUILD_TIMEOUT_S:.0f} s") from None
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout)[-2000:]
        raise BenchError(f"building the tiny pipeline failed ({completed.returncode}):\n{tail}")
    return folder


@dataclass(frozen=True, slots=True)
class Service:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


def service_env(
    port: int, scratch: Path, *, model: Path, width: int, height: int, device: str, overrides: dict[str, str]
) -> dict[str, str]:
    return {
        **base_env(),
        "POKEMON_HOST": HOST,
        "POKEMON_PORT": str(port),
        "POKEMON_GENERATION_BACKEND": "sdxl",
        "POKEMON_RATE_LIMIT_PER_MIN": "0",
        # Paths that do not exist: the server then serves plain HTTP, which is what wrk speaks here.
        "POKEMON_TLS_CERT": str(scratch / "no-cert.pem"),
        "POKEMON_TLS_KEY": str(scratch / "no-key.pem"),
        "SDXL_TURBO_MODEL": str(model),
        "SDXL_WIDTH": str(width),
        "SDXL_HEIGHT": str(height),
        "SDXL_DEVICE": device,
        "HF_HUB_OFFLINE": "1",
        "LOG_JSON": "1",
        "LOG_LEVEL": "INFO",  # sdxl.generate, the batch sizes, is an INFO line
        **overrides,
    }


def _spawn(
    processes: Processes, argv: Sequence[str], *, cpu: int | None, env: dict[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    if cpu is not None:
        return processes.spawn(argv, cpu=cpu, env=env, log_path=log_path)
    # Unpinned (a GPU server wants its cores for PNG encoding and the CUDA launch thread).
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes.started.append(process)
    return process


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    # Without the per-request lines: the health polling would push the load failure out of view.
    lines = log_path.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if '"http.re' not in line)[-chars:]


def wait_ready(service: Service, timeout: float) -> float:
    """Waits for `/health/ready` (the model loaded and warmed), then checks the sdxl backend is what serves.

    Returns the seconds it waited. A load failure also ends in "ready" — the files backend serving —
    which would make this a benchmark of the wrong thing, hence the component check.
    """
    began = time.monotonic()
    deadline = began + timeout
    while True:
        if service.process.poll() is not None:
            status = service.process.returncode
            raise BenchError(f"the service exited with status {status}; its log ends:\n{_log_tail(service.log_path)}")
        with contextlib.suppress(OSError):
            status, _ = http_get(service.port, "/health/ready", timeout=2.0)
            if status == 200:
                break
        if time.monotonic() > deadline:
            raise BenchError(
                f"the model was not ready within {timeout:.0f} s; the log ends:\n{_log_tail(service.log_path)}"
            )
        time.sleep(0.25)
    waited = time.monotonic() - began
    _, body = http_get(service.port, "/health")
    health = json.loads(body)
    images = health["components"]["images"]
    if health["backend"] != "sdxl" or images["status"] != "ok":
        raise BenchError(f"the sdxl backend is not serving: {images}; the log ends:\n{_log_tail(service.log_path)}")
    return waited


def png_size(image_base64: str) -> tuple[int, int]:
    # The IHDR chunk is always first: width and height are bytes 16..24 of any PNG.
    header = base64.b64decode(image_base64[:32])
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def probe(service: Service, width: int, height: int) -> int:
    """One request: answered 200, by the sdxl backend, at the configured size. Returns the response size."""
    status, body = http_get(service.port, "/v1/generate", timeout=120.0)
    if status != 200:
        raise BenchError(f"GET /v1/generate answered {status}: {body[:300]!r}")
    payload = json.loads(body)
    source = payload["metadata"]["imageSource"]
    size = png_size(payload["imageBase64"])
    if source != "sdxl" or size != (width, height):
        raise BenchError(f"expected a {width}×{height} sdxl image, got a {size[0]}×{size[1]} {source} image")
    return len(body)


def start_service(
    processes: Processes,
    scratch: Path,
    *,
    name: str,
    model: Path,
    width: int,
    height: int,
    device: str,
    cpu: int | None,
    overrides: dict[str, str],
    ready_timeout: float = READY_TIMEOUT_S,
) -> tuple[Service, float]:
    """Starts the service and waits until it serves sdxl images; returns it and the seconds that took."""
    began = time.monotonic()
    port = free_port()
    log_path = scratch / f"{name}.log"
    env = service_env(port, scratch, model=model, width=width, height=height, device=device, overrides=overrides)
    process = _spawn(processes, [sys.executable, "-m", "handlers.server"], cpu=cpu, env=env, log_path=log_path)
    service = Service(port, process, log_path)
    wait_healthy(process, port, log_path, name)
    wait_ready(service, ready_timeout)
    return service, time.monotonic() - began


# --- the server's log ---------------------------------------------------------------------------


@dataclass
class Batches:
    sizes: list[int] = field(default_factory=list)
    durations_ms: list[float] = field(default_factory=list)
    fallbacks: int = 0  # batches the pipeline failed, served with files images instead

    def extend(self, other: Batches) -> None:
        self.sizes += other.sizes
        self.durations_ms += other.durations_ms
        self.fallbacks += other.fallbacks

    @property
    def mean_size(self) -> float:
        return statistics.fmean(self.sizes) if self.sizes else 0.0

    def distribution(self) -> dict[int, int]:
        return dict(sorted(Counter(self.sizes).items()))


def settle(log_path: Path) -> int:
    """The log's length once it has stopped growing: the offset where the next round's lines begin."""
    deadline = time.monotonic() + LOG_SETTLE_MAX_S
    size = log_path.stat().st_size
    while time.monotonic() < deadline:
        time.sleep(LOG_QUIET_S)
        now = log_path.stat().st_size
        if now == size:
            break
        size = now
    return size


def read_batches(log_path: Path, start: int = 0, end: int | None = None) -> Batches:
    """`sdxl.generate` and `sdxl.fallback` lines between two byte offsets of the server's JSON log."""
    batches = Batches()
    with log_path.open("rb") as stream:
        stream.seek(start)
        chunk = stream.read() if end is None else stream.read(max(0, end - start))
    for line in chunk.splitlines():
        if b'"sdxl.' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            record = json.loads(line)
            extra = record.get("extra", {})
            if record["message"] == "sdxl.generate":
                batches.sizes.append(int(extra["batch_size"]))
                batches.durations_ms.append(float(extra["duration_ms"]))
            elif record["message"] == "sdxl.fallback":
                batches.fallbacks += 1
    return batches


def measure_wrk(service: Service, *, connections: int, seconds: float, cpu: int) -> tuple[WrkResult, Batches]:
    """One wrk run and the batches the server ran for it."""
    start = settle(service.log_path)
    result = run_wrk(service.port, connections=connections, seconds=seconds, cpu=cpu)
    return result, read_batches(service.log_path, start, settle(service.log_path))


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


def measure(service: Service, args: argparse.Namespace) -> dict[int, Level]:
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


def format_distribution(distribution: dict[int, int]) -> str:
    return " ".join(f"{size}:{count}" for size, count in distribution.items()) or "none"


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
        "load": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "server_cpu": args.server_cpu,
            "wrk_cpu": args.wrk_cpu,
        },
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
        f"\nservice: sdxl backend, tiny random SDXL pipeline (tests/tiny_sdxl.py),"
        f" {settings['size']}×{settings['size']},"
        f" SDXL_DEVICE=cpu, POKEMON_MAX_BATCH={settings['max_batch']}, response ~{report['response_bytes']} bytes,"
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


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_diffusion",
        description="Throughput of GET /v1/generate on the sdxl backend (tiny pipeline, CPU) at -c1 and -c8.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating -c1/-c8 rounds (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and concurrency (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per concurrency (default 2)")
    parser.add_argument("--size", type=int, default=64, help="SDXL_WIDTH and SDXL_HEIGHT (default 64)")
    parser.add_argument("--max-batch", type=int, help="POKEMON_MAX_BATCH for the service (default: its own, 8)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the service is pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument(
        "--env", action="append", default=[], type=_setting, metavar="KEY=VALUE", help="an extra service setting"
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
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed; install it with: apt-get update && apt-get install -y wrk")
    available = os.sched_getaffinity(0)
    if args.server_cpu == args.wrk_cpu or not {args.server_cpu, args.wrk_cpu} <= available:
        raise BenchError(f"need two distinct available CPUs for --server-cpu/--wrk-cpu; available: {sorted(available)}")
    probe_imports = "import torch, diffusers; print(torch.__version__, diffusers.__version__)"
    completed = subprocess.run(
        [sys.executable, "-c", probe_imports], capture_output=True, text=True, timeout=120, check=False
    )
    if completed.returncode != 0:
        raise BenchError("torch and diffusers are needed: pip install -e '.[diffusion]' (see README)")


def versions(*packages: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for package in packages:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


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

    def measure_all() -> dict[str, object]:
        check_prerequisites(args)
        return run(args)

    return finish("bench_diffusion", args, measure_all, render)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
