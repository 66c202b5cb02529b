"""Throughput of a small WebP against the default PNG on one server, and the payload of every format.

    .venv/bin/python -m bench.bench_formats [--rounds 5] [--duration 5] [--connections 32] [--json PATH]

One real server (files backend, the drawn art, the rate limiter on and admitting everyone, INFO logs to a file)
on CPU 0, wrk (`-t1`) on CPU 1. Rounds alternate `GET /v1/generate` (the default PNG in JSON) and
`GET /v1/generate?format=webp&size=256`, and each WebP round is compared with the PNG round just before it; the
figure is the median of those ratios (target ≥ 0.9×: the cached encodings serve as fast as the loaded PNG).
Before the rounds, every payload is fetched once per image and format, as JSON and as the raw image, to print
what each weighs. Only 127.0.0.1 is ever contacted. See bench/README.md for the shared conventions.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.harness import HOST, BenchError, Processes, Server, base_env, http_get, require_cpus, start_server
from bench.report import Outcome, environment, finish, load_figures, outcome_of, ratio_figures, ratio_lines, wrk_table
from bench.wrk import Target, WrkResult, alternate_as_asked, require_wrk, summarize
from tests.support.paths import SHIPPED_IMAGES

TARGET_RATIO = 0.9
RATE_LIMIT_PER_MIN = 1_000_000_000  # on, so it runs on every request, and never refusing
DEFAULT_PATH = "/v1/generate"
SMALL_WEBP_PATH = "/v1/generate?format=webp&size=256"
# What the payload table shows: (label, query).
VARIANTS: tuple[tuple[str, str], ...] = (
    ("png (default, 512 px)", ""),
    ("png, size=256", "format=png&size=256"),
    ("webp (512 px)", "format=webp"),
    ("webp, size=256", "format=webp&size=256"),
    ("jpeg (512 px)", "format=jpeg"),
    ("jpeg, size=256", "format=jpeg&size=256"),
)
SEEDS = range(60)  # enough seeds to meet each of the six images several times


def start_real(processes: Processes, scratch: Path, cpu: int) -> Server:
    def env(port: int) -> dict[str, str]:
        return {
            **base_env(),
            "POKEMON_HOST": HOST,
            "POKEMON_PORT": str(port),
            "POKEMON_IMAGES_DIR": str(SHIPPED_IMAGES),
            "POKEMON_RATE_LIMIT_PER_MIN": str(RATE_LIMIT_PER_MIN),
            "POKEMON_TLS_CERT": str(scratch / "no-cert.pem"),  # absent: plain HTTP, which wrk speaks here
            "POKEMON_TLS_KEY": str(scratch / "no-key.pem"),
            "LOG_JSON": "1",
            "LOG_LEVEL": "INFO",
        }

    return start_server(processes, "real", [sys.executable, "-m", "handlers.server"], env, scratch=scratch, cpu=cpu)


def raw_get(port: int, path: str, accept: str) -> tuple[int, bytes]:
    import http.client

    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass(frozen=True, slots=True)
class Payload:
    label: str
    query: str
    json_bytes: float  # mean over the seeds
    raw_bytes: float


def measure_payloads(port: int) -> list[Payload]:
    """Mean JSON and raw sizes per variant over `SEEDS` (the same seeds, so the same image mix, for each)."""
    payloads = []
    for label, query in VARIANTS:
        json_sizes, raw_sizes = [], []
        for seed in SEEDS:
            path = f"/v1/generate?seed={seed}" + (f"&{query}" if query else "")
            status, body = http_get(port, path)
            if status != 200:
                raise BenchError(f"GET {path} answered {status}: {body[:200]!r}")
            json_sizes.append(len(body))
            status, image = raw_get(port, path, "image/*")
            if status != 200:
                raise BenchError(f"GET {path} (Accept: image/*) answered {status}")
            raw_sizes.append(len(image))
        payloads.append(Payload(label, query, statistics.mean(json_sizes), statistics.mean(raw_sizes)))
    return payloads


def check_small_webp(port: int) -> None:
    """The path the rounds load really answers a 256 px WebP (a bench of the wrong thing is no bench)."""
    from PIL import Image

    status, body = http_get(port, SMALL_WEBP_PATH)
    if status != 200:
        raise BenchError(f"GET {SMALL_WEBP_PATH} answered {status}")
    metadata = json.loads(body)["metadata"]
    if (metadata.get("imageFormat"), metadata.get("imageWidth")) != ("webp", 256):
        raise BenchError(f"GET {SMALL_WEBP_PATH} answered {metadata}")
    _, raw = raw_get(port, SMALL_WEBP_PATH, "image/webp")
    with Image.open(io.BytesIO(raw)) as image:
        if image.format != "WEBP" or max(image.size) != 256:
            raise BenchError(f"the raw answer is {image.format} {image.size}")


def measure(server: Server, args: argparse.Namespace) -> dict[str, list[WrkResult]]:
    """Results by "png" and "webp"; the WebP cache fills in the warm-up."""
    return alternate_as_asked(
        [Target("png", server.port, DEFAULT_PATH), Target("webp", server.port, SMALL_WEBP_PATH)], args
    )


def build_report(
    rounds: dict[str, list[WrkResult]], payloads: list[Payload], args: argparse.Namespace
) -> dict[str, object]:
    png, webp = rounds["png"], rounds["webp"]
    return {
        **ratio_figures("ratio_webp_over_png", png, webp, TARGET_RATIO),
        "paths": {"png": DEFAULT_PATH, "webp": SMALL_WEBP_PATH},
        "servers": {"png": summarize(png), "webp": summarize(webp)},
        "rounds": {"png": [asdict(r) for r in png], "webp": [asdict(r) for r in webp]},
        "payloads": [asdict(payload) for payload in payloads],
        "load": load_figures(args, connections=args.connections),
        "environment": environment(),
    }


def render(report: dict[str, object]) -> str:
    servers: dict[str, dict[str, float]] = report["servers"]  # type: ignore[assignment]
    paths: dict[str, str] = report["paths"]  # type: ignore[assignment]
    payloads: list[dict[str, object]] = report["payloads"]  # type: ignore[assignment]
    load: dict[str, object] = report["load"]  # type: ignore[assignment]
    env: dict[str, object] = report["environment"]  # type: ignore[assignment]
    out = io.StringIO()
    out.write("\n")
    out.write(wrk_table("request", 38, {paths[name]: servers[name] for name in ("png", "webp")}))
    ratio = float(report["ratio_webp_over_png"])  # type: ignore[arg-type]
    out.write(ratio_lines("webp 256 / default png", ratio, report))
    baseline = float(payloads[0]["json_bytes"])  # type: ignore[arg-type]
    out.write(f"\n{'payload (mean over 60 seeds)':<28} {'JSON bytes':>11} {'raw bytes':>10} {'JSON vs default':>16}\n")
    out.write(f"{'-' * 28} {'-' * 11} {'-' * 10} {'-' * 16}\n")
    for payload in payloads:
        json_bytes, raw_bytes = float(payload["json_bytes"]), float(payload["raw_bytes"])  # type: ignore[arg-type]
        out.write(f"{payload['label']!s:<28} {json_bytes:>11.0f} {raw_bytes:>10.0f} {json_bytes / baseline:>15.2f}×\n")
    out.write(
        f"\nload: wrk -t1 -c{load['connections']} --latency, {load['rounds']} rounds × {load['duration_s']} s per path"
        f" (+{load['warmup_s']} s warm-up each), server on CPU {load['server_cpu']}, wrk on CPU {load['wrk_cpu']};"
        " INFO logs on, rate limiter on (admits all)\n"
        f"environment: Python {env['python']}, uvicorn {env['uvicorn']}, {env['wrk']},"
        f" {env['cpu_count']} cores ({env['cpu_model']})\n"
    )
    return out.getvalue()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_formats", description="A 256 px WebP vs the default PNG, with wrk.")
    parser.add_argument("--rounds", type=int, default=5, help="alternating png/webp rounds (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and path (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per path (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when the ratio misses the target")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 1 or args.connections < 1:
        parser.error("--rounds, --duration, --warmup and --connections must be ≥ 1")
    return args


def run(args: argparse.Namespace) -> dict[str, object]:
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="pokemon-bench-") as name:
        scratch = Path(name)
        try:
            server = start_real(processes, scratch, args.server_cpu)
            print(f"server up: :{server.port} (pid {server.process.pid})", flush=True)
            check_small_webp(server.port)
            payloads = measure_payloads(server.port)
            rounds = measure(server, args)
        finally:
            processes.stop_all()
    return build_report(rounds, payloads, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def measure_all() -> Outcome:
        require_wrk()
        require_cpus(args.server_cpu, args.wrk_cpu)
        return outcome_of(run(args), render)

    return finish("bench_formats", measure_all, json_path=args.json, fail_on_miss=args.fail_on_miss)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
