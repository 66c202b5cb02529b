"""Throughput of the real service against a bare FastAPI app serving the same bytes, measured with wrk.

    .venv/bin/python bench/bench_server.py [--rounds 5] [--duration 5] [--connections 32] [--json PATH]

Both servers run on CPU 0 and wrk (`-t1`) on CPU 1, so the client never competes with the server for
a core. Rounds alternate bare, real, bare, real, … and each real round is compared with the bare round
just before it, which cancels most of the drift (thermal, noisy neighbours) a long run picks up.
Only 127.0.0.1 is ever contacted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARE_APP = Path(__file__).resolve().parent / "bare_app.py"
HOST = "127.0.0.1"
TARGET_RATIO = 0.75
# High enough that no client is ever refused, low enough that the limiter still runs on every request.
RATE_LIMIT_PER_MIN = 1_000_000_000
IMAGE_COUNT = 6  # POKEMON_MIN_INDEX=0 .. POKEMON_MAX_INDEX=5, the service's defaults
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 12.0  # uvicorn's graceful shutdown is 10 s; then SIGKILL
WRK_GRACE_S = 20.0  # on top of the run's duration before a hung wrk is killed
# Inherited settings would make the run depend on the caller's shell; the server gets defaults instead.
SCRUBBED_ENV_PREFIXES = ("POKEMON_", "LOG_", "SDXL_", "OPENAI_")
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class BenchError(Exception):
    """The benchmark cannot run or produced nothing usable; the message is one line for the user."""


# --- wrk output ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise BenchError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)] * 1000.0


def _required(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise BenchError(f"wrk output lacks {pattern!r}:\n{output}")
    return match


def parse_wrk(output: str) -> WrkResult:
    """Read `wrk --latency` text; absent error lines mean zero errors."""
    percentiles = {
        int(m.group(1)): _duration_ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    if 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"wrk output lacks the latency distribution (was --latency passed?):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sockets is not None:
        socket_errors = dict(zip(socket_errors, (int(g) for g in sockets.groups()), strict=True))
    return WrkResult(
        requests=int(_required(r"^\s+(\d+) requests in", output).group(1)),
        requests_per_s=float(_required(r"^Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


# --- processes ----------------------------------------------------------------------------------


def pin_to(cpu: int) -> Callable[[], None]:
    """A preexec_fn: the child is pinned before it execs, so every thread it starts inherits the CPU."""

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def free_port() -> int:
    # The port is released before the server binds it; on a loopback-only bench the race is harmless.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (uvicorn drains and exits), then SIGKILL if it is still there after `timeout`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@dataclass
class Processes:
    """Every child this run started, so the `finally` can stop each one by its own pid."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, argv: Sequence[str], *, cpu: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log_file:  # the child keeps its own descriptor
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # preexec_fn is unsafe only with threads around; this script runs none.
                preexec_fn=pin_to(cpu),
                start_new_session=True,  # a Ctrl-C reaches this script, which then stops the servers itself
            )
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                stop(process)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    # http.client rather than urllib: urllib would honour an http_proxy variable and leave the machine.
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path, name: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"the {name} server exited with status {process.returncode}; its log ends:\n{tail}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, "/health", timeout=1.0)
            if status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"the {name} server did not answer /health within {HEALTH_TIMEOUT_S:.0f} s")


# --- the two servers ----------------------------------------------------------------------------


def synthesize_images(folder: Path) -> Path:
    """Six seeded 512×512 PNGs of about 30 KB, so the response is as large as with real art (~40 KB).

    A coarse noisy gradient, upscaled: random pixels would not compress at all, a plain gradient to
    almost nothing; cells of 6 px land on the size of the drawn creatures.
    """
    from PIL import Image  # the service's own dependency; imported here so `--help` works without it

    folder.mkdir(parents=True, exist_ok=True)
    cells = 512 // 6
    for index in range(IMAGE_COUNT):
        rng = random.Random(f"bench-image:{index}")
        small = Image.new("RGB", (cells, cells))
        small.putdata(
            [
                (
                    (x * 255 // cells + rng.randrange(40)) % 256,
                    (y * 255 // cells + rng.randrange(40)) % 256,
                    (index * 40 + rng.randrange(60)) % 256,
                )
                for y in range(cells)
                for x in range(cells)
            ]
        )
        small.resize((512, 512), Image.Resampling.NEAREST).save(folder / f"image_{index:02d}.png")
    return folder


def choose_images(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    """The art in ./pokemon when it is all there, else synthetic stand-ins; says which."""
    if args.images is not None:
        return args.images, f"{args.images} (--images)"
    drawn = REPO / "pokemon"
    if not args.synthetic_images and all((drawn / f"image_{i:02d}.png").is_file() for i in range(IMAGE_COUNT)):
        return drawn, "./pokemon (the drawn art)"
    reason = "--synthetic-images" if args.synthetic_images else "./pokemon has no image_00..05.png yet"
    return synthesize_images(scratch / "images"), f"synthetic 512×512 PNGs of ~30 KB ({reason})"


def base_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(SCRUBBED_ENV_PREFIXES)}
    env["PYTHONPATH"] = str(REPO)
    return env


def _setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def real_env(port: int, images: Path, scratch: Path, overrides: dict[str, str]) -> dict[str, str]:
    return {
        **base_env(),
        "POKEMON_HOST": HOST,
        "POKEMON_PORT": str(port),
        "POKEMON_IMAGES_DIR": str(images),
        "POKEMON_RATE_LIMIT_PER_MIN": str(RATE_LIMIT_PER_MIN),
        # Paths that do not exist: the server then serves plain HTTP, which is what wrk speaks here.
        "POKEMON_TLS_CERT": str(scratch / "no-cert.pem"),
        "POKEMON_TLS_KEY": str(scratch / "no-key.pem"),
        "LOG_JSON": "1",
        "LOG_LEVEL": "INFO",
        **overrides,
    }


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


def start_real(processes: Processes, images: Path, scratch: Path, cpu: int, overrides: dict[str, str]) -> Server:
    port = free_port()
    log_path = scratch / "real-server.log"
    argv = [sys.executable, "-m", "handlers.server"]
    process = processes.spawn(argv, cpu=cpu, env=real_env(port, images, scratch, overrides), log_path=log_path)
    wait_healthy(process, port, log_path, "real")
    return Server("real", port, process, log_path)


def start_bare(processes: Processes, body_dir: Path, scratch: Path, cpu: int) -> Server:
    port = free_port()
    log_path = scratch / "bare-server.log"
    env = {**base_env(), "BENCH_BODY_DIR": str(body_dir), "BENCH_HOST": HOST, "BENCH_PORT": str(port)}
    process = processes.spawn([sys.executable, str(BARE_APP)], cpu=cpu, env=env, log_path=log_path)
    wait_healthy(process, port, log_path, "bare")
    return Server("bare", port, process, log_path)


def fetch_bodies(server: Server, *, attempts: int = 300) -> list[bytes]:
    """One real response per distinct image, so the baseline sends the same mix of sizes as the service."""
    by_image: dict[bytes, bytes] = {}
    for _ in range(attempts):
        status, body = http_get(server.port, "/v1/generate")
        if status != 200:
            raise BenchError(f"GET /v1/generate on the real server answered {status}: {body[:300]!r}")
        image = json.loads(body)["imageBase64"].encode()
        by_image.setdefault(image, body)
        if len(by_image) == IMAGE_COUNT:
            break
    return list(by_image.values())


# --- load ---------------------------------------------------------------------------------------


def run_wrk(port: int, *, connections: int, seconds: float, cpu: int) -> WrkResult:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://{HOST}:{port}/v1/generate",
    ]
    try:
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_GRACE_S,
            preexec_fn=pin_to(cpu),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + WRK_GRACE_S:.0f} s") from None
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
    return parse_wrk(completed.stdout)


@dataclass
class Rounds:
    bare: list[WrkResult] = field(default_factory=list)
    real: list[WrkResult] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [real.requests_per_s / bare.requests_per_s for bare, real in zip(self.bare, self.real, strict=True)]


def measure(bare: Server, real: Server, args: argparse.Namespace, progress: Callable[[str], None]) -> Rounds:
    load = {"connections": args.connections, "cpu": args.wrk_cpu}
    for server in (bare, real):
        # Warm-up: lets the allocator, CPU caches and lazily built state settle before anything counts.
        run_wrk(server.port, seconds=args.warmup, **load)
    rounds = Rounds()
    for index in range(1, args.rounds + 1):
        for server, results in ((bare, rounds.bare), (real, rounds.real)):
            result = run_wrk(server.port, seconds=args.duration, **load)
            results.append(result)
            flag = f"  ERRORS {result.errors}" if result.errors else ""
            progress(
                f"  round {index}/{args.rounds} {server.name:<4} {result.requests_per_s:9.1f} req/s"
                f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms{flag}"
            )
    return rounds


# --- report -------------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _wrk_version() -> str:
    # `wrk -v` prints a banner and exits 1; the first line carries the version.
    completed = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0].split(" [")[0] if lines else "wrk (unknown version)"


def environment() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "uvicorn": _version("uvicorn"),
        "fastapi": _version("fastapi"),
        "starlette": _version("starlette"),
        "uvloop": _version("uvloop"),
        "httptools": _version("httptools"),
        "wrk": _wrk_version(),
        "cpu_count": os.cpu_count(),
        "cpus_available": sorted(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
    }


def summarize(results: list[WrkResult]) -> dict[str, float | int]:
    return {
        "median_requests_per_s": statistics.median(r.requests_per_s for r in results),
        "median_p50_ms": statistics.median(r.p50_ms for r in results),
        "median_p99_ms": statistics.median(r.p99_ms for r in results),
        "errors": sum(r.errors for r in results),
        "non_2xx": sum(r.non_2xx for r in results),
    }


def count_log_lines(log_path: Path) -> tuple[int, int]:
    """Lines the real server wrote, and how many it says it dropped (its queue drops when stdout lags)."""
    lines = dropped = 0
    with log_path.open("rb") as stream:
        for line in stream:
            lines += 1
            if b'"log.dropped"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    dropped += int(json.loads(line)["extra"]["lines"])
    return lines, dropped


def build_report(
    rounds: Rounds, body_size: int, images_note: str, log_path: Path, args: argparse.Namespace
) -> dict[str, object]:
    ratios = rounds.ratios()
    ratio = statistics.median(ratios)
    errors = sum(r.errors for r in rounds.bare + rounds.real)
    requests = sum(r.requests for r in rounds.real)
    log_lines, dropped = count_log_lines(log_path)
    return {
        "valid": errors == 0,
        "ratio_real_over_bare": ratio,
        "per_round_ratios": ratios,
        "target_ratio": TARGET_RATIO,
        # Failed requests are cheap, so a run with errors would flatter the real server: no verdict then.
        "verdict": "INVALID" if errors else ("PASS" if ratio >= TARGET_RATIO else "MISS"),
        "servers": {"bare": summarize(rounds.bare), "real": summarize(rounds.real)},
        "rounds": {"bare": [asdict(r) for r in rounds.bare], "real": [asdict(r) for r in rounds.real]},
        "response_bytes": body_size,
        "images": images_note,
        "real_server": {
            "rate_limit_per_min": RATE_LIMIT_PER_MIN,
            "log_lines_written": log_lines,
            "log_lines_dropped": dropped,
            "requests_measured": requests,  # timed rounds only, warm-up excluded
            "setting_overrides": dict(args.env),
        },
        "load": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": 1,
            "server_cpu": args.server_cpu,
            "wrk_cpu": args.wrk_cpu,
        },
        "environment": environment(),
    }


def render(report: dict[str, object]) -> str:
    servers: dict[str, dict[str, float]] = report["servers"]  # type: ignore[assignment]
    load: dict[str, object] = report["load"]  # type: ignore[assignment]
    env: dict[str, object] = report["environment"]  # type: ignore[assignment]
    real: dict[str, object] = report["real_server"]  # type: ignore[assignment]
    out = io.StringIO()
    out.write("\n")
    out.write(f"{'server':<6} {'req/s (median)':>15} {'p50 ms':>9} {'p99 ms':>9} {'errors':>8}\n")
    out.write(f"{'-' * 6} {'-' * 15} {'-' * 9} {'-' * 9} {'-' * 8}\n")
    for name in ("bare", "real"):
        row = servers[name]
        out.write(
            f"{name:<6} {row['median_requests_per_s']:>15.1f} {row['median_p50_ms']:>9.2f}"
            f" {row['median_p99_ms']:>9.2f} {int(row['errors']):>8}\n"
        )
    ratios = ", ".join(f"{value:.3f}" for value in report["per_round_ratios"])  # type: ignore[attr-defined]
    out.write(
        f"\nreal/bare throughput: {report['ratio_real_over_bare']:.3f}×  (target ≥ {TARGET_RATIO:.2f}×)"
        f"  {report['verdict']}\n"
    )
    out.write(f"  per-round ratios: {ratios}\n")
    if not report["valid"]:
        out.write("  INVALID RUN: some requests failed (non-2xx or socket errors); the figures do not count\n")
    out.write(
        f"\nresponse size: {report['response_bytes']} bytes on average (the baseline cycles through one real"
        f" response per image); images: {report['images']}\n"
    )
    out.write(
        f"load: wrk -t1 -c{load['connections']} --latency, {load['rounds']} rounds × {load['duration_s']} s per server"
        f" (+{load['warmup_s']} s warm-up), servers on CPU {load['server_cpu']}, wrk on CPU {load['wrk_cpu']}\n"
    )
    out.write(
        f"real server: rate limiter on at {RATE_LIMIT_PER_MIN} req/min per client (runs on every request,"
        f" admits all); JSON INFO logs to a file: {real['log_lines_written']} lines written,"
        f" {real['log_lines_dropped']} dropped\n"
    )
    if real["setting_overrides"]:
        out.write(f"real server settings overridden: {real['setting_overrides']}\n")
    out.write(
        f"environment: Python {env['python']}, uvicorn {env['uvicorn']}, FastAPI {env['fastapi']},"
        f" Starlette {env['starlette']}, uvloop {env['uvloop']}, httptools {env['httptools']}, {env['wrk']}\n"
        f"             {env['cpu_count']} cores ({env['cpu_model']}), {env['platform']}\n"
    )
    return out.getvalue()


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_server", description="Real service vs a bare FastAPI app on GET /v1/generate, with wrk."
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/real rounds (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and server (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--images", type=Path, help="images for the real server (default ./pokemon, else synthetic)")
    parser.add_argument(
        "--synthetic-images", action="store_true", help="use generated ~30 KB PNGs even when ./pokemon has art"
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=_setting,
        metavar="KEY=VALUE",
        help="an extra setting for the real server, e.g. LOG_LEVEL=WARNING to see what logging costs (repeatable)",
    )
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when the ratio misses the target")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 1 or args.connections < 1:
        parser.error("--rounds, --duration, --warmup and --connections must be ≥ 1")
    return args


def check_prerequisites(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed; install it with: apt-get update && apt-get install -y wrk")
    available = os.sched_getaffinity(0)
    wanted = {args.server_cpu, args.wrk_cpu}
    if args.server_cpu == args.wrk_cpu or not wanted <= available:
        raise BenchError(f"need two distinct available CPUs for --server-cpu/--wrk-cpu; available: {sorted(available)}")


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pokemon-bench-") as name:
        yield Path(name)


def run(args: argparse.Namespace) -> dict[str, object]:
    processes = Processes()
    with scratch_dir() as scratch:
        try:
            images, images_note = choose_images(args, scratch)
            real = start_real(processes, images, scratch, args.server_cpu, dict(args.env))
            bodies = fetch_bodies(real)
            body_dir = scratch / "bodies"
            body_dir.mkdir()
            for index, body in enumerate(bodies):
                (body_dir / f"{index}.json").write_bytes(body)
            bare = start_bare(processes, body_dir, scratch, args.server_cpu)
            print(f"servers up: real :{real.port} (pid {real.process.pid}), bare :{bare.port} (pid {bare.process.pid})")
            rounds = measure(bare, real, args, progress=lambda line: print(line, flush=True))
        finally:
            processes.stop_all()
        # After the stop, so that the real server has flushed its last log lines.
        mean_size = sum(len(body) for body in bodies) // len(bodies)
        return build_report(rounds, mean_size, images_note, real.log_path, args)


def finish(
    name: str,
    args: argparse.Namespace,
    measure_all: Callable[[], dict[str, object]],
    show: Callable[[dict[str, object]], str],
) -> int:
    """Run, print and save a benchmark; the exit status every benchmark here shares (see README)."""
    try:
        report = measure_all()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    print(show(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")
    if not report["valid"]:
        return 1
    if args.fail_on_miss and report["verdict"] == "MISS":
        return 3
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def measure_all() -> dict[str, object]:
        check_prerequisites(args)
        return run(args)

    return finish("bench", args, measure_all, render)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
