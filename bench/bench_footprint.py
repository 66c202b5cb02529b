"""Footprint of the server process: start-up to the first creature and memory after 200 requests, against the
bare FastAPI app of bench_server.py serving the same bytes, side by side.

    .venv/bin/python -m bench.bench_footprint [--runs 7] [--requests 200] [--json PATH]

Each run starts a fresh server process pinned to one CPU (this script runs on another): the service
(`python -m handlers.server`, its default settings as bench_server.py runs them: JSON INFO logs to a file, the
limiter on but admitting everything, plain HTTP) or `bench/bare_app.py` with one real response per image. The
start-up time runs from spawning the process to the first 200 on `GET /v1/generate` (polled every 2 ms); then
`--requests` more requests go over one keep-alive connection, and the process's resident memory is read from
/proc/<pid>/status (VmRSS). Runs alternate bare, service, … after one unmeasured run of each, and each service
figure is divided by the bare run's just before it. Only 127.0.0.1 is contacted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.bench_server import IMAGE_COUNT, real_env
from bench.harness import HOST, BenchError, Processes, base_env, stop
from bench.report import finish, outcome_of, versions
from tests.support.paths import SHIPPED_IMAGES
from tests.support.ports import free_port

TARGET_RATIO = 1.3
START_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.002


@dataclass(frozen=True, slots=True)
class Footprint:
    startup_ms: float  # spawn → first 200 on GET /v1/generate
    rss_kib: int  # VmRSS after the requests
    peak_rss_kib: int  # VmHWM: the most it held at any time


def resident_kib(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of `pid`, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])  # "123456 kB"
    return fields["VmRSS"], fields["VmHWM"]


def first_creature(connection: http.client.HTTPConnection) -> tuple[int, bytes]:
    connection.request("GET", "/v1/generate")
    response = connection.getresponse()
    return response.status, response.read()


def run_once(
    name: str, argv: Sequence[str], env: Callable[[int], dict[str, str]], args: argparse.Namespace, scratch: Path
) -> Footprint:
    processes = Processes()
    port = free_port()
    log_path = scratch / f"{name}.log"
    try:
        began = time.perf_counter()
        process = processes.spawn(argv, cpu=args.server_cpu, env=env(port), log_path=log_path)
        deadline = began + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise BenchError(f"the {name} server exited with status {process.returncode}; its log ends:\n{tail}")
            connection = http.client.HTTPConnection(HOST, port, timeout=5.0)
            try:
                status, _ = first_creature(connection)
            except (OSError, http.client.HTTPException):
                connection.close()
                if time.perf_counter() > deadline:
                    raise BenchError(f"the {name} server served no creature within {START_TIMEOUT_S:.0f} s") from None
                time.sleep(POLL_INTERVAL_S)
                continue
            startup_ms = (time.perf_counter() - began) * 1000
            break
        with contextlib.closing(connection):
            if status != 200:
                raise BenchError(f"the {name} server's first GET /v1/generate answered {status}")
            for _ in range(args.requests):
                status, _ = first_creature(connection)
                if status != 200:
                    raise BenchError(f"the {name} server answered {status} to GET /v1/generate")
        rss, peak = resident_kib(process.pid)
        stop(process)
        return Footprint(startup_ms, rss, peak)
    finally:
        processes.stop_all()


def service_bodies(args: argparse.Namespace, scratch: Path) -> Path:
    """One real response per image for the bare app, from a service process started for the purpose."""
    processes = Processes()
    port = free_port()
    env = real_env(port, SHIPPED_IMAGES, scratch, {})
    process = processes.spawn(
        [sys.executable, "-m", "handlers.server"], cpu=args.server_cpu, env=env, log_path=scratch / "setup.log"
    )
    by_image: dict[bytes, bytes] = {}
    try:
        deadline = time.perf_counter() + START_TIMEOUT_S
        while len(by_image) < IMAGE_COUNT:
            if time.perf_counter() > deadline or process.poll() is not None:
                raise BenchError("the service did not start to give the bare app its responses")
            connection = http.client.HTTPConnection(HOST, port, timeout=5.0)
            try:
                status, body = first_creature(connection)
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
                continue
            finally:
                connection.close()
            if status == 200:
                by_image.setdefault(json.loads(body)["imageBase64"].encode(), body)
    finally:
        processes.stop_all()
    folder = scratch / "bodies"
    folder.mkdir()
    for index, body in enumerate(by_image.values()):
        (folder / f"{index}.json").write_bytes(body)
    return folder


def measure(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="pokemon-footprint-") as name:
        scratch = Path(name)
        bodies = service_bodies(args, scratch)

        def bare_env(port: int) -> dict[str, str]:
            return {**base_env(), "BENCH_BODY_DIR": str(bodies), "BENCH_HOST": HOST, "BENCH_PORT": str(port)}

        servers = {
            "bare": ([sys.executable, "-m", "bench.bare_app"], bare_env),
            "service": (
                [sys.executable, "-m", "handlers.server"],
                lambda port: real_env(port, SHIPPED_IMAGES, scratch, {}),
            ),
        }
        for server, (argv, env) in servers.items():  # unmeasured: warms the page and bytecode caches
            run_once(server, argv, env, args, scratch)
        runs: dict[str, list[Footprint]] = {"bare": [], "service": []}
        for index in range(1, args.runs + 1):
            for server, (argv, env) in servers.items():
                footprint = run_once(server, argv, env, args, scratch)
                runs[server].append(footprint)
                print(
                    f"  run {index}/{args.runs} {server:<7} start-up {footprint.startup_ms:7.1f} ms"
                    f"  RSS {footprint.rss_kib / 1024:6.1f} MiB  (peak {footprint.peak_rss_kib / 1024:6.1f} MiB)",
                    flush=True,
                )
    return report(runs, args)


def pair_ratios(runs: dict[str, list[Footprint]], attribute: str) -> list[float]:
    return [
        float(getattr(service, attribute)) / float(getattr(bare, attribute))
        for bare, service in zip(runs["bare"], runs["service"], strict=True)
    ]


def report(runs: dict[str, list[Footprint]], args: argparse.Namespace) -> dict[str, object]:
    figures: dict[str, dict[str, object]] = {}
    for attribute in ("startup_ms", "rss_kib"):
        ratios = pair_ratios(runs, attribute)
        ratio = statistics.median(ratios)
        figures[attribute] = {
            "bare_median": statistics.median(float(getattr(run, attribute)) for run in runs["bare"]),
            "service_median": statistics.median(float(getattr(run, attribute)) for run in runs["service"]),
            "ratio": ratio,
            "per_run_ratios": ratios,
            "verdict": "PASS" if ratio <= TARGET_RATIO else "MISS",
        }
    missed = any(figure["verdict"] == "MISS" for figure in figures.values())
    return {
        "valid": True,  # every request answered 200 (anything else ends the benchmark)
        "verdict": "MISS" if missed else "PASS",
        "target_ratio": TARGET_RATIO,
        "figures": figures,
        "runs": {server: [asdict(run) for run in footprints] for server, footprints in runs.items()},
        "requests": args.requests,
        "server_cpu": args.server_cpu,
        "python": sys.version.split()[0],
        "versions": versions("uvicorn", "fastapi", "starlette", "pydantic", "pillow", "orjson", "prometheus-client"),
    }


def render(report: dict[str, object]) -> str:
    figures: dict[str, dict[str, object]] = report["figures"]  # type: ignore[assignment]
    rows = (
        ("start-up to first creature", "startup_ms", "ms", 1.0),
        (f"RSS after {report['requests']} requests", "rss_kib", "MiB", 1024.0),
    )
    lines = ["", f"{'':<30} {'bare':>10} {'service':>10} {'ratio':>7}  range        target  verdict   (medians)"]
    for label, key, unit, scale in rows:
        figure = figures[key]
        ratios: list[float] = figure["per_run_ratios"]  # type: ignore[assignment]
        lines.append(
            f"{label:<30} {figure['bare_median'] / scale:>7.1f} {unit:<3}"  # type: ignore[operator]
            f"{figure['service_median'] / scale:>7.1f} {unit:<3}{figure['ratio']:>6.2f}×"  # type: ignore[operator]
            f"  {min(ratios):.2f}–{max(ratios):.2f}×  ≤ {TARGET_RATIO:.1f}×  {figure['verdict']}"
        )
    runs: dict[str, list[object]] = report["runs"]  # type: ignore[assignment]
    lines += [
        "",
        f"ratios: median of {len(runs['bare'])} alternating pairs (service / the bare run just before it);"
        f" servers on CPU {report['server_cpu']}, this script on another; Python {report['python']}",
        "versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),  # type: ignore[attr-defined]
    ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def off_the_server_cpu(server_cpu: int) -> Iterator[None]:
    """Runs this script (the client) on another CPU than the servers, when there is one."""
    available = os.sched_getaffinity(0)
    others = available - {server_cpu}
    if others:
        os.sched_setaffinity(0, others)
    try:
        yield
    finally:
        os.sched_setaffinity(0, available)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_footprint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating bare/service pairs (default 7; ≥ 5)")
    parser.add_argument("--requests", type=int, default=200, help="requests before memory is read (default 200)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default 0)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a ratio misses the target")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.requests < 0:
        parser.error("--runs must be ≥ 1 and --requests ≥ 0")
    if args.server_cpu not in os.sched_getaffinity(0):
        parser.error(f"CPU {args.server_cpu} is not available: {sorted(os.sched_getaffinity(0))}")

    def run() -> dict[str, object]:
        with off_the_server_cpu(args.server_cpu):
            return measure(args)

    return finish(
        "bench_footprint", lambda: outcome_of(run(), render), json_path=args.json, fail_on_miss=args.fail_on_miss
    )


if __name__ == "__main__":
    raise SystemExit(main())
