"""Remote names cost no latency: `/v1/generate` with POKEMON_NAME_BACKEND=remote against the local backend.

Runs the test suite's OpenAI-compatible server (`tests/support/fake_openai.py`) as the model, then two services
side by side — local names and remote names — and loads them in alternating rounds with wrk:

1. the model answers every name in 300 ms: target p50(remote) ≤ 1.2 × p50(local), the pool hiding it;
2. the model hangs: once the breaker is open, target p99(remote) ≤ 2 × p99(local).

    .venv/bin/python -m bench.bench_names [--rounds 3] [--duration 5] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.harness import HOST, BenchError, Processes, base_env, http_get, start_server
from bench.wrk import WrkResult, alternate_services, median, require_wrk
from tests.support.fake_llm import FakeLLM, start_fake_llm

LLM_DELAY_MS = 300
P50_TARGET = 1.2
P99_TARGET = 2.0


def start_service(processes: Processes, scratch: Path, name: str, cpu: int, **settings: str) -> int:
    def env(port: int) -> dict[str, str]:
        return {
            **base_env(),
            "POKEMON_HOST": HOST,
            "POKEMON_PORT": str(port),
            "POKEMON_RATE_LIMIT_PER_MIN": "0",
            "POKEMON_TLS_CERT": str(scratch / "none.pem"),
            "POKEMON_TLS_KEY": str(scratch / "none.pem"),
            **settings,
        }

    argv = [sys.executable, "-m", "handlers.server"]
    return start_server(processes, name, argv, env, scratch=scratch, cpu=cpu).port


def health(port: int) -> dict[str, object]:
    status, body = http_get(port, "/health")
    return dict(json.loads(body)) if status == 200 else {}


def name_sources(port: int, samples: int = 50) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(samples):
        _, body = http_get(port, "/v1/generate")
        source = json.loads(body)["metadata"]["nameSource"]
        counts[source] = counts.get(source, 0) + 1
    return counts


def wait_until(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(0.1)


def report(title: str, results: dict[str, list[WrkResult]], field: str, target: float, sources: dict[str, int]) -> bool:
    local, remote = median(results["local"], field), median(results["remote"], field)
    ratio = remote / local
    verdict = "PASS" if ratio <= target else "MISS"
    print(f"\n{title}")
    print(f"  {'backend':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("local", "remote"):
        rows = results[name]
        rate, p50, p99 = (median(rows, key) for key in ("requests_per_s", "p50_ms", "p99_ms"))
        print(f"  {name:8} {rate:9.1f} {p50:8.2f} {p99:8.2f}")
    label = field.removesuffix("_ms")
    print(f"  {label}(remote) / {label}(local) = {ratio:.2f}×  (target ≤ {target}×)  {verdict}")
    print(f"  names served by the remote service (sample of {sum(sources.values())}): {sources}")
    return verdict == "PASS"


def run(args: argparse.Namespace) -> bool:
    processes = Processes()
    llm: FakeLLM | None = None
    with tempfile.TemporaryDirectory(prefix="bench-names-") as folder:
        scratch = Path(folder)
        try:
            llm = start_fake_llm()
            llm.set("clean", delay_ms=LLM_DELAY_MS)
            ports = {
                "local": start_service(processes, scratch, "local", args.server_cpu),
                "remote": start_service(
                    processes,
                    scratch,
                    "remote",
                    args.server_cpu,
                    POKEMON_NAME_BACKEND="remote",
                    OPENAI_BASE_URL=llm.base_url,
                    OPENAI_TIMEOUT="1.0",
                    POKEMON_NAME_BREAKER_FAILURES="3",
                    POKEMON_NAME_BREAKER_COOLDOWN="300",
                ),
            }
            wait_until(lambda: llm is not None and llm.stats()["chat_requests"] >= 4, "the first names")
            print(f"model answering in {LLM_DELAY_MS} ms; services up: {ports}")
            slow = alternate_services(ports, args)
            slow_ok = report(
                f"1. model answering in {LLM_DELAY_MS} ms", slow, "p50_ms", P50_TARGET, name_sources(ports["remote"])
            )

            llm.set("hang")
            wait_until(lambda: health(ports["remote"]).get("status") == "degraded", "the breaker to open")
            print("\nmodel hanging; breaker open")
            hung = alternate_services(ports, args)
            hung_ok = report(
                "2. model hanging, breaker open", hung, "p99_ms", P99_TARGET, name_sources(ports["remote"])
            )
        finally:
            processes.stop_all()
            if llm is not None:
                llm.stop()
    print(f"\nload: wrk -t1 -c{args.connections}, {args.rounds} rounds × {args.duration} s per service, alternating")
    return slow_ok and hung_ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and service")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        require_wrk()
    except BenchError as exc:
        print(f"bench_names: {exc}", file=sys.stderr)
        return 2
    try:
        return 0 if run(args) else 3
    except BenchError as exc:
        print(f"bench_names: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
