"""Two service processes on one redis-server: one rate limit and one failed-auth budget for the fleet, a
table that wins over Redis, and a Redis outage that degrades the service without slowing it."""

from __future__ import annotations

import json
import time

import httpx

from handlers.routes import GENERATE_PATH, HEALTH_PATH
from tests.support.environment import AWS_ENV
from tests.support.ports import LOOPBACK, free_port
from tests.support.redis_server import RedisServer
from tests.support.server import ServerFactory, ServerProcess
from tests.support.silent_server import SilentServer

TOKEN = "fleet-secret-token"
TIMEOUT_MS = 200
COOLDOWN = 0.5  # seconds
FAST = 0.2  # seconds: a request answered without waiting on Redis (generous: two busy CPU cores)


def _fleet_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "POKEMON_NAME_BACKEND": "local",
        "POKEMON_REDIS_URL": redis.url,
        "POKEMON_REDIS_TIMEOUT_MS": str(TIMEOUT_MS),
        "POKEMON_REDIS_BREAKER_FAILURES": "3",
        "POKEMON_REDIS_BREAKER_COOLDOWN": str(COOLDOWN),
        **extra,
    }


def _get(server: ServerProcess, path: str, **headers: str) -> httpx.Response:
    with server.client() as client:
        return client.get(path, headers=headers)


def _timed(server: ServerProcess) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = _get(server, GENERATE_PATH)
    return response, time.perf_counter() - started


def _health(server: ServerProcess) -> dict[str, object]:
    report = _get(server, HEALTH_PATH).json()
    assert isinstance(report, dict)
    return report


def _component(report: dict[str, object], name: str) -> dict[str, str]:
    components = report["components"]
    assert isinstance(components, dict)
    component = components[name]
    assert isinstance(component, dict)
    return component


def _breaker_lines(server: ServerProcess) -> list[tuple[str, str]]:
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    return [(line["extra"]["previous"], line["extra"]["state"]) for line in lines if line["message"] == "redis.breaker"]


def test_two_instances_admit_the_limit_once_between_them(
    redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    env = _fleet_env(redis_server, POKEMON_RATE_LIMIT_PER_MIN="5")
    fleet = [server_factory(env), server_factory(env)]
    responses = [_get(fleet[n % 2], GENERATE_PATH) for n in range(8)]
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 3
    assert [r.headers["RateLimit-Remaining"] for r in responses] == ["4", "3", "2", "1", "0", "0", "0", "0"]
    for refused in responses[5:]:  # from either instance
        assert int(refused.headers["Retry-After"]) == 12  # 5 per minute: one token every 12 s
        assert refused.headers["RateLimit-Limit"] == "5"
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
    for server in fleet:
        report = _health(server)
        assert report["status"] == "ok"
        assert _component(report, "rateLimit") == {"backend": "redis", "status": "ok", "detail": None}
        assert _component(report, "redis")["status"] == "ok"
    assert redis_server.client().keys("pokemon:ratelimit:*") == [b"pokemon:ratelimit:127.0.0.1"]


def test_wrong_tokens_spread_over_the_fleet_spend_one_budget(
    redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    env = _fleet_env(redis_server, POKEMON_BEARER_TOKEN=TOKEN, POKEMON_AUTH_FAILURES_PER_MIN="3")
    a, b = server_factory(env), server_factory(env)
    wrong, right = f"Bearer not-{TOKEN}", f"Bearer {TOKEN}"
    # Three failures in all, whichever instance saw them; each alone would still allow more.
    guesses = [_get(server, GENERATE_PATH, Authorization=wrong) for server in (a, b, a, b)]
    assert [r.status_code for r in guesses] == [401, 401, 401, 429]
    assert int(guesses[-1].headers["Retry-After"]) >= 1
    # Past the budget the right token is refused too, on the instance that refused a take and on the one
    # whose take spent the last token.
    assert _get(b, GENERATE_PATH, Authorization=right).status_code == 429
    assert _get(a, GENERATE_PATH, Authorization=right).status_code == 429
    assert redis_server.client().exists("pokemon:ratelimit:auth:127.0.0.1")


def test_a_table_wins_over_redis(redis_server: RedisServer, server_factory: ServerFactory) -> None:
    nowhere = f"http://{LOOPBACK}:{free_port()}"  # never called: only /health is asked
    server = server_factory(
        {
            **_fleet_env(redis_server),
            **AWS_ENV,
            "AWS_ENDPOINT_URL_DYNAMODB": nowhere,
            "POKEMON_RATE_LIMIT_TABLE": "rate-limits",
        }
    )
    report = _health(server)
    assert _component(report, "rateLimit")["backend"] == "dynamodb"
    assert _component(report, "redis")["status"] == "ok"  # still the fleet's store, for what else uses it


def test_a_redis_outage_degrades_the_service_without_slowing_it(
    redis_server: RedisServer, server_factory: ServerFactory
) -> None:
    open_server = server_factory(_fleet_env(redis_server, POKEMON_RATE_LIMIT_PER_MIN="1000"))
    closed_server = server_factory(
        _fleet_env(redis_server, POKEMON_RATE_LIMIT_PER_MIN="1000", POKEMON_RATE_LIMIT_FAIL_OPEN="0")
    )
    for server in (open_server, closed_server):
        assert _get(server, GENERATE_PATH).status_code == 200

    redis_server.kill()
    answers = [_timed(open_server) for _ in range(8)]
    assert [r.status_code for r, _ in answers] == [200] * 8  # the fail-open rule: this process's own budget
    assert all(seconds < TIMEOUT_MS / 1000 + 0.3 for _, seconds in answers), answers
    assert all(seconds < FAST for _, seconds in answers[3:]), answers  # the breaker is open
    refused = [_timed(closed_server) for _ in range(5)]
    assert [r.status_code for r, _ in refused] == [429] * 5  # the fail-closed rule
    assert all(r.headers["Retry-After"] == "5" for r, _ in refused)
    assert all(seconds < TIMEOUT_MS / 1000 + 0.3 for _, seconds in refused), refused

    report = _health(open_server)
    assert report["status"] == "degraded"
    assert _component(report, "redis")["status"] == "degraded"
    rate_limit = _component(report, "rateLimit")
    assert rate_limit["backend"] == "redis" and rate_limit["status"] == "degraded"
    assert "admitted on this process's own budget" in rate_limit["detail"]
    assert "refused" in _component(_health(closed_server), "rateLimit")["detail"]

    redis_server.start()  # the same port, empty
    deadline = time.monotonic() + COOLDOWN + 5
    for server in (open_server, closed_server):
        # The first request after the cooldown is the probe; its answer closes the breaker.
        while _health(server)["status"] != "ok" and time.monotonic() < deadline:
            _get(server, GENERATE_PATH)
            time.sleep(COOLDOWN / 5)
        report = _health(server)
        assert report["status"] == "ok"
        assert _component(report, "rateLimit") == {"backend": "redis", "status": "ok", "detail": None}
    assert _get(closed_server, GENERATE_PATH).status_code == 200

    for server in (open_server, closed_server):
        server.stop()  # the log is complete once the process has flushed it
        assert _breaker_lines(server) == [("closed", "open"), ("half_open", "closed")]


def test_a_hung_redis_costs_a_few_requests_one_time_limit_each(server_factory: ServerFactory) -> None:
    with SilentServer() as silent:
        port = silent.url.rsplit(":", 1)[1]
        env = {
            "POKEMON_NAME_BACKEND": "local",
            "POKEMON_REDIS_URL": f"redis://{LOOPBACK}:{port}/0",
            "POKEMON_REDIS_TIMEOUT_MS": str(TIMEOUT_MS),
            "POKEMON_REDIS_BREAKER_FAILURES": "3",
            "POKEMON_REDIS_BREAKER_COOLDOWN": "60",
        }
        server = server_factory(env)
        answers = [_timed(server) for _ in range(8)]
        assert [r.status_code for r, _ in answers] == [200] * 8
        # Three calls wait out the store's time limit, no more; then the open breaker answers at once.
        assert all(TIMEOUT_MS / 1000 - 0.05 < seconds < TIMEOUT_MS / 1000 + 0.3 for _, seconds in answers[:3]), answers
        assert all(seconds < FAST for _, seconds in answers[3:]), answers
        assert _component(_health(server), "rateLimit")["status"] == "degraded"
        server.stop()
    assert _breaker_lines(server) == [("closed", "open")]
