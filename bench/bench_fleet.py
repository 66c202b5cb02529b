"""A fleet sharing one Redis: what the model is asked per creature, and what the shared limit costs per request.

1. **Model calls per served creature.** The test suite's OpenAI-compatible server is the model (each answer
   takes `--model-delay-ms`). The same load — `--rate` requests per second for `--seconds`, spread evenly over
   the instances — is served by one instance with Redis, by three instances sharing that Redis, and, for
   reference, by three instances without Redis (each with its own name pool). The model's own request count
   divided by the creatures served is the figure; target: three instances sharing Redis call the model at
   most 1.2× as often per creature as one instance (without Redis, three instances call it about 3× as often
   under a load the model cannot keep up with). Redis is flushed between scenarios.
2. **The limiter's cost per request.** Two servers side by side with a limit that admits everything
   (`POKEMON_RATE_LIMIT_PER_MIN=1000000000`): buckets in memory, and buckets in Redis (one EVALSHA per
   request). wrk loads them in alternating rounds; the figure is Redis's req/s over memory's (and the
   p50 latency added).

    .venv/bin/python -m bench.bench_fleet [--rate 150] [--seconds 8] [--rounds 3] [--duration 5]

Every process it starts (redis-server, the model, the services, wrk) binds or contacts 127.0.0.1 only and is
stopped by its pid when the run ends.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import HOST, BenchError, Processes, base_env, start_server
from bench.wrk import WrkResult, alternate_services, median, require_wrk
from tests.support.fake_llm import FakeLLM, start_fake_llm
from tests.support.redis_server import RedisServer, RedisServerError

CALLS_TARGET = 1.2  # three instances sharing Redis, per creature, over one instance
LIMITER_LIMIT = "1000000000"  # the limiter runs on every request and admits everything


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    instances: int
    shared: bool


SCENARIOS = (
    Scenario("1 instance, Redis", 1, True),
    Scenario("3 instances, Redis", 3, True),
    Scenario("3 instances, no Redis", 3, False),
)


@dataclass(frozen=True, slots=True)
class CallsResult:
    scenario: Scenario
    served: int
    failed: int
    model_calls: int
    sources: dict[str, int]

    @property
    def calls_per_creature(self) -> float:
        return self.model_calls / max(1, self.served)


def start_service(processes: Processes, scratch: Path, name: str, cpu: int | None, **settings: str) -> int:
    def env(port: int) -> dict[str, str]:
        return {
            **base_env(),
            "POKEMON_HOST": HOST,
            "POKEMON_PORT": str(port),
            "POKEMON_TLS_CERT": str(scratch / "none.pem"),
            "POKEMON_TLS_KEY": str(scratch / "none.pem"),
            "LOG_LEVEL": "WARNING",
            **settings,
        }

    return start_server(processes, name, [sys.executable, "-m", "handlers.server"], env, scratch=scratch, cpu=cpu).port


def drive(ports: list[int], rate: float, seconds: float) -> tuple[int, int, Counter[str]]:
    """`rate` requests per second in all, round-robin over `ports`, each sent on schedule (open loop)."""
    sources: Counter[str] = Counter()
    lock = threading.Lock()
    served = failed = 0
    clients = [httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10.0) for port in ports]

    def one(index: int) -> None:
        nonlocal served, failed
        try:
            response = clients[index % len(clients)].get("/v1/generate")
            source = response.json()["metadata"]["nameSource"] if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            source = None
        with lock:
            if source is None:
                failed += 1
            else:
                served += 1
                sources[source] += 1

    total = int(rate * seconds)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for index in range(total):
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, index)
    for client in clients:
        client.close()
    return served, failed, sources


def model_calls(scratch: Path, llm: FakeLLM, redis: RedisServer, args: argparse.Namespace) -> list[CallsResult]:
    results: list[CallsResult] = []
    for scenario in SCENARIOS:
        with redis.client() as client:
            client.flushall()
        llm.set("clean", delay_ms=args.model_delay_ms)
        processes = Processes()
        try:
            settings = {
                "POKEMON_NAME_BACKEND": "remote",
                "OPENAI_BASE_URL": llm.base_url,
                "POKEMON_RATE_LIMIT_PER_MIN": "0",
                **({"POKEMON_REDIS_URL": redis.url} if scenario.shared else {}),
            }
            ports = [
                start_service(processes, scratch, f"calls-{scenario.instances}-{scenario.shared}-{i}", None, **settings)
                for i in range(scenario.instances)
            ]
            before = llm.stats()["chat_requests"]
            served, failed, sources = drive(ports, args.rate, args.seconds)
            calls = llm.stats()["chat_requests"] - before
        finally:
            processes.stop_all()
        result = CallsResult(scenario, served, failed, calls, dict(sources))
        results.append(result)
        print(
            f"  {scenario.name:24} served {served:5}  model calls {calls:5}  "
            f"{result.calls_per_creature:.3f} per creature  names {dict(sources)}",
            flush=True,
        )
    return results


def limiter_cost(scratch: Path, redis: RedisServer, args: argparse.Namespace) -> dict[str, list[WrkResult]]:
    processes = Processes()
    try:
        common = {"POKEMON_RATE_LIMIT_PER_MIN": LIMITER_LIMIT}
        ports = {
            "memory": start_service(processes, scratch, "limit-memory", args.server_cpu, **common),
            "redis": start_service(
                processes, scratch, "limit-redis", args.server_cpu, POKEMON_REDIS_URL=redis.url, **common
            ),
        }
        return alternate_services(ports, args)
    finally:
        processes.stop_all()


def report(calls: list[CallsResult], limits: dict[str, list[WrkResult]], args: argparse.Namespace) -> bool:
    one, shared, unshared = calls
    shared_ratio = shared.calls_per_creature / max(one.calls_per_creature, 1e-9)
    unshared_ratio = unshared.calls_per_creature / max(one.calls_per_creature, 1e-9)
    calls_ok = shared_ratio <= CALLS_TARGET and all(result.failed == 0 for result in calls)
    print(
        f"\n1. model calls per served creature ({args.rate:g} req/s for {args.seconds:g} s,"
        f" model {args.model_delay_ms} ms)"
    )
    print(f"  {'scenario':24} {'served':>7} {'failed':>7} {'calls':>7} {'per creature':>13} {'vs 1 instance':>14}")
    for result in calls:
        ratio = result.calls_per_creature / max(one.calls_per_creature, 1e-9)
        print(
            f"  {result.scenario.name:24} {result.served:7} {result.failed:7} {result.model_calls:7}"
            f" {result.calls_per_creature:13.3f} {ratio:13.2f}×"
        )
    verdict = "PASS" if calls_ok else "MISS"
    print(f"  3 instances sharing Redis / 1 instance = {shared_ratio:.2f}×  (target ≤ {CALLS_TARGET}×)  {verdict}")
    print(f"  (without Redis: {unshared_ratio:.2f}×)")

    memory_rate, redis_rate = median(limits["memory"], "requests_per_s"), median(limits["redis"], "requests_per_s")
    memory_p50, redis_p50 = median(limits["memory"], "p50_ms"), median(limits["redis"], "p50_ms")
    print("\n2. the limiter's cost per request (every request admitted)")
    print(f"  {'store':8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name in ("memory", "redis"):
        rate, p50, p99 = (median(limits[name], field) for field in ("requests_per_s", "p50_ms", "p99_ms"))
        print(f"  {name:8} {rate:9.1f} {p50:8.2f} {p99:8.2f}")
    print(
        f"  redis / memory: {redis_rate / memory_rate:.2f}× the throughput, "
        f"+{(redis_p50 - memory_p50) * 1000:.0f} µs at p50 ({1e6 / redis_rate - 1e6 / memory_rate:.0f} µs of "
        "server time per request)"
    )
    print(
        f"\nload: part 1 open-loop from Python threads; part 2 wrk -t1 -c{args.connections}, "
        f"{args.rounds} rounds × {args.duration} s per store, alternating"
    )
    if args.json:
        figures = {
            "calls": [
                {
                    "scenario": result.scenario.name,
                    "served": result.served,
                    "failed": result.failed,
                    "model_calls": result.model_calls,
                    "per_creature": result.calls_per_creature,
                    "sources": result.sources,
                }
                for result in calls
            ],
            "shared_ratio": shared_ratio,
            "limiter": {
                "memory_rps": memory_rate,
                "redis_rps": redis_rate,
                "memory_p50": memory_p50,
                "redis_p50": redis_p50,
            },
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return calls_ok


def run(args: argparse.Namespace) -> bool:
    llm: FakeLLM | None = None
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as folder:
        scratch = Path(folder)
        redis = RedisServer(scratch)
        try:
            redis.start()
            llm = start_fake_llm()
            print("1. model calls per served creature")
            calls = model_calls(scratch, llm, redis, args)
            print("\n2. limiter cost: memory against Redis")
            limits = limiter_cost(scratch, redis, args)
        finally:
            if llm is not None:
                llm.stop()
            redis.stop()
    return report(calls, limits, args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=150.0, help="requests per second, all instances together")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each scenario of part 1 runs")
    parser.add_argument("--model-delay-ms", type=int, default=50, help="how long the model takes per name")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk round and store")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--wrk-cpu", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    try:
        require_wrk()
        return 0 if run(args) else 3
    except (BenchError, RedisServerError) as exc:
        print(f"bench_fleet: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
