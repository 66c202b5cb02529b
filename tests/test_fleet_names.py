"""Two service processes sharing one redis-server for their model names, through HTTP.

A's name server is the fake OpenAI server; B's is a closed port. B serves the names A's model answered, the
fleet's model calls stay within the lease slots however many instances ask, and a Redis outage mid-run costs
neither instance its latency: names then come from each process's own pool, `/health` says so, and
everything is back to `ok` by itself once Redis answers again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from handlers.routes import GENERATE_PATH, HEALTH_PATH
from tests.support.fake_llm import FakeLLM
from tests.support.ports import LOOPBACK, free_port
from tests.support.redis_server import RedisServer
from tests.support.server import ServerFactory, ServerProcess

FLEET_NAMES = ["Mossquill", "Voltaran", "Aquaclaw", "Embrelith", "Thornwick", "Glaciore", "Pyrrhex", "Zephlit"]
TARGET = 6  # POKEMON_NAME_POOL_SIZE: the shared pool's target
SLOTS = 2  # POKEMON_NAME_CONCURRENCY: lease slots, the fleet's model calls in flight at most
FAST = 0.2  # seconds: a request answered without waiting on Redis (generous: two busy CPU cores)


def fleet_env(redis: RedisServer, model_url: str, **extra: str) -> dict[str, str]:
    return {
        "POKEMON_NAME_BACKEND": "remote",
        "OPENAI_BASE_URL": model_url,
        "OPENAI_TIMEOUT": "1",
        "POKEMON_NAME_POOL_SIZE": str(TARGET),
        "POKEMON_NAME_CONCURRENCY": str(SLOTS),
        "POKEMON_NAME_BREAKER_FAILURES": "2",
        "POKEMON_RATE_LIMIT_PER_MIN": "0",
        "POKEMON_REDIS_URL": redis.url,
        "POKEMON_REDIS_TIMEOUT_MS": "200",
        "POKEMON_REDIS_BREAKER_FAILURES": "3",
        "POKEMON_REDIS_BREAKER_COOLDOWN": "0.5",
        **extra,
    }


def unreachable_model() -> str:
    return f"http://{LOOPBACK}:{free_port()}/v1"  # nothing listens there: every call is refused at once


def metadata(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get(GENERATE_PATH, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json()["metadata"])


def timed(client: httpx.Client) -> tuple[dict[str, Any], float]:
    began = time.perf_counter()
    answer = metadata(client)
    return answer, time.perf_counter() - began


def health(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get(HEALTH_PATH).json())


def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def events(server: ServerProcess, message: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    return [line["extra"] for line in lines if line["message"] == message]


def test_an_instance_without_a_model_serves_the_names_another_fetched(
    llm: FakeLLM, redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    llm.set("clean", names=FLEET_NAMES)
    fetching = server_factory(fleet_env(redis_server, llm.base_url))
    cut_off = server_factory(fleet_env(redis_server, unreachable_model()))
    with cut_off.client() as client:
        wait_for(lambda: metadata(client)["nameSource"] == "remote")
        served = [metadata(client) for _ in range(20)]
        seeded, again = metadata(client, seed=42), metadata(client, seed=42)
        report = health(client)

    assert {answer["nameSource"] for answer in served} == {"remote"}
    assert {answer["name"] for answer in served} <= set(FLEET_NAMES)
    assert seeded["nameSource"] == "local" and seeded["name"] == again["name"]  # reproducible, as without Redis
    assert seeded["name"] not in FLEET_NAMES
    names = report["components"]["names"]
    assert report["status"] == "ok" and names["status"] == "ok", report
    assert "shared pool" in names["detail"], names
    assert llm.stats()["max_in_flight"] <= SLOTS
    # Whether the cut-off instance ever called its own model depends on the race for lease slots with the
    # other one (which keeps the pool full): its breaker is covered in process (tests/test_names_shared.py).
    fetching.stop()
    cut_off.stop()


def test_the_fleets_model_calls_stay_within_the_lease_slots(
    llm: FakeLLM, redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    llm.set("clean", names=FLEET_NAMES, delay_ms=150)  # slow answers, so that calls would pile up without leases
    fleet = [server_factory(fleet_env(redis_server, llm.base_url)) for _ in range(2)]
    clients = [server.client() for server in fleet]
    try:
        wait_for(lambda: redis_server.client().llen("pokemon:names:pool") >= TARGET - SLOTS)
        served = [metadata(clients[index % 2]) for index in range(40)]
        wait_for(lambda: redis_server.client().llen("pokemon:names:pool") == TARGET)
        time.sleep(0.5)
        calls = llm.stats()["chat_requests"]
        time.sleep(1.0)  # both instances idle, the pool at its target: no model call at all
        idle_calls = llm.stats()["chat_requests"] - calls
    finally:
        for client in clients:
            client.close()

    assert {answer["nameSource"] for answer in served} == {"remote"}
    assert llm.stats()["max_in_flight"] <= SLOTS  # two instances, two workers each: four without the leases
    assert idle_calls == 0
    # The pool, each instance's buffer and the repeats bound what a served name costs: at most one call.
    assert calls <= len(served) + TARGET + 2 * 8


def test_redis_killed_mid_run_costs_no_latency_and_recovers_by_itself(
    llm: FakeLLM, redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    llm.set("clean", names=FLEET_NAMES)
    fetching = server_factory(fleet_env(redis_server, llm.base_url))
    cut_off = server_factory(fleet_env(redis_server, unreachable_model()))
    with fetching.client() as a, cut_off.client() as b:
        wait_for(lambda: metadata(b)["nameSource"] == "remote" and health(b)["status"] == "ok")
        usual = max(timed(b)[1] for _ in range(20))

        redis_server.kill()
        during = [timed(client) for _ in range(15) for client in (a, b)]
        # Each process's breaker opens after three failed calls in a row; from then on nothing waits on Redis.
        wait_for(lambda: all("breaker open" in health(client)["components"]["redis"]["detail"] for client in (a, b)))
        down_a, down_b = health(a), health(b)
        during += [timed(client) for _ in range(15) for client in (a, b)]

        redis_server.start()  # same address, empty, as a restarted cache would be
        wait_for(lambda: health(a)["status"] == "ok" and health(b)["status"] == "ok")
        wait_for(lambda: metadata(b)["nameSource"] == "remote")  # the fleet's names reach B again
        after = health(b)

    slowest = max(seconds for _, seconds in during)
    assert slowest < max(FAST, 3 * usual), (usual, slowest)
    sources = [(answer["nameSource"], answer["name"]) for answer, _ in during]
    assert {source for source, name in sources[::2]} == {"remote"}  # A: its own pool, from its own model
    for report in (down_a, down_b):
        assert report["components"]["redis"]["status"] == "degraded", report
        names = report["components"]["names"]
        assert names["status"] == "degraded" and "redis" in names["detail"], report
    assert after["components"]["names"]["status"] == "ok" and after["components"]["redis"]["status"] == "ok"
    fetching.stop()
    cut_off.stop()
    for server in (fetching, cut_off):
        transitions = [(line["previous"], line["state"]) for line in events(server, "redis.breaker")]
        assert transitions == [("closed", "open"), ("half_open", "closed")], transitions
