"""In-process companion to bench_server.py: the per-request CPU cost of the service's ASGI app.

No sockets and no load generator, so the figures are far steadier than a wrk run on a shared machine:
each app is called directly with a `GET /v1/generate` scope, in alternating rounds, and the table gives
the median microseconds per request, the service's cost above the bare FastAPI app, and the throughput
ratio bare/real that those costs imply (sockets excluded: the wrk benchmark includes them). Variants
switch logging and the rate limiter off to show what each costs.

    .venv/bin/python -m bench.bench_asgi [--rounds 7] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench import bare_app
from core.config import load_settings
from core.eventlog import configure_logging
from core.metrics import PrometheusMetrics
from handlers.api import create_app
from tests.support.paths import SHIPPED_IMAGES

Message = dict[str, Any]

VARIANTS: dict[str, dict[str, Any]] = {
    "default (INFO logs, limiter on)": {},
    "logging off (LOG_LEVEL=WARNING)": {"log_level": "WARNING"},
    "rate limiter off": {"rate_limit_per_min": 0},
}


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/generate",
        "raw_path": b"/v1/generate",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 22222),
        "state": {},
    }


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    return None


async def one_response(app: Any) -> bytes:
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message["body"])

    await app(scope(), receive, keep)
    return b"".join(chunks)


async def time_round(app: Any, requests: int) -> float:
    began = time.perf_counter()
    for _ in range(requests):
        await app(scope(), receive, discard)
    return (time.perf_counter() - began) / requests * 1e6


async def measure(overrides: dict[str, Any], rounds: int, requests: int) -> tuple[float, float]:
    settings = load_settings(**{"images_dir": SHIPPED_IMAGES, "rate_limit_per_min": 10**9, **overrides})
    # Lines are formatted as in production and handed to the writer thread, which writes them nowhere.
    configure_logging(level=settings.log_level, stream=open_sink())
    real = create_app(settings, metrics=PrometheusMetrics())  # as handlers.server does
    await real.state.context.service.start()
    bodies = {await one_response(real) for _ in range(200)}  # one per image, as the wrk benchmark does
    bare = bare_app.create_app(sorted(bodies))
    bare_times, real_times = [], []
    for app in (bare, real):  # warm-up
        await time_round(app, requests // 3)
    for _ in range(rounds):
        bare_times.append(await time_round(bare, requests))
        real_times.append(await time_round(real, requests))
    return statistics.median(bare_times), statistics.median(real_times)


def open_sink() -> io.TextIOWrapper:
    return open("/dev/null", "w", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000, help="requests per round and app")
    args = parser.parse_args(argv)
    print(f"{'variant':34} {'bare µs':>8} {'real µs':>8} {'extra µs':>9} {'bare/real':>10}")
    for label, overrides in VARIANTS.items():
        bare, real = asyncio.run(measure(overrides, args.rounds, args.requests))
        print(f"{label:34} {bare:8.1f} {real:8.1f} {real - bare:9.1f} {bare / real:9.2f}×")
    print(f"\nmedian of {args.rounds} alternating rounds × {args.requests} requests; Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
