"""A rate-limit store that accepts connections and never answers: requests must not wait for it.

The endpoint is `tests.support.silent_server` (TCP accepted, never a byte back) as
`AWS_ENDPOINT_URL_DYNAMODB`. Without the fail-fast rules, one client's concurrent requests queued behind a
lock held across the call and each waited out the timeouts: answers at 3, 6, 9... seconds. Recovery through
a working store is tested against moto in tests/test_ratelimit_dynamodb.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from core.breaker import BreakerState
from core.eventlog import configure_logging
from core.health import HealthStatus
from core.ratelimit import RateDecision, TokenBucket
from core.ratelimit.dynamodb import DynamoDBRateLimiter
from handlers.routes import GENERATE_PATH
from tests.support.clock import FakeClock
from tests.support.environment import AWS_ENV
from tests.support.server import ServerFactory, ServerProcess
from tests.support.silent_server import SilentServer

ONE_CALL = 1.5  # seconds: what one call to a hung store may cost (one read timeout, with margin)
AT_ONCE = 0.05


@pytest.fixture
def silent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    with SilentServer() as server:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": server.url}.items():
            monkeypatch.setenv(name, value)
        yield server


def _events(stream: io.StringIO, message: str) -> list[dict[str, str]]:
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [event["extra"] for event in events if event["message"] == message]


async def _timed(limiter: DynamoDBRateLimiter, keys: list[str]) -> tuple[float, list[RateDecision]]:
    began = time.monotonic()
    decisions = await asyncio.gather(*(limiter.acquire(key) for key in keys))
    return time.monotonic() - began, decisions


def test_a_hung_store_costs_one_timeout_then_nothing_until_the_probe(silent: SilentServer) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, background=False)
    clock = FakeClock()
    limiter = DynamoDBRateLimiter("rate-limits", TokenBucket.per_minute(60), breaker_clock=clock)

    async def scenario() -> None:
        # One client, six concurrent requests: one call goes out and all six are answered when it fails.
        elapsed, decisions = await _timed(limiter, ["one-client"] * 6)
        assert elapsed < ONE_CALL, elapsed
        assert all(decision.allowed for decision in decisions)  # fail open, with the estimate
        assert silent.accepted == 1
        assert limiter.health().status is HealthStatus.DEGRADED  # a recent failure, breaker still closed

        # Six clients at once: six calls in parallel (no lock), all failed, and the breaker (3) opens.
        elapsed, _ = await _timed(limiter, [f"client-{index}" for index in range(6)])
        assert elapsed < ONE_CALL, elapsed
        assert limiter.breaker_state is BreakerState.OPEN
        connections = silent.accepted

        # Open: answered at once, the socket untouched, nothing logged per request.
        elapsed, decisions = await _timed(limiter, ["one-client"] * 6 + ["client-9"])
        assert elapsed < AT_ONCE, elapsed
        assert all(decision.allowed for decision in decisions)
        assert silent.accepted == connections

        # After the cool-down exactly one probe goes out; it fails and the breaker opens again.
        clock.now += 5.0
        elapsed, _ = await _timed(limiter, ["one-client", "client-1", "client-2"])
        assert elapsed < ONE_CALL, elapsed
        assert silent.accepted == connections + 1
        assert limiter.breaker_state is BreakerState.OPEN

    asyncio.run(scenario())
    failures = limiter.store_failures
    limiter.close()
    assert failures == 1 + 6 + 1  # calls that went out, not requests
    assert len(_events(stream, "rate_limit.store_failed")) == failures
    assert [(e["previous"], e["state"]) for e in _events(stream, "rate_limit.breaker")] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
    ]


def test_fail_closed_refuses_at_once_while_open(silent: SilentServer) -> None:
    limiter = DynamoDBRateLimiter(
        "rate-limits", TokenBucket.per_minute(5), fail_open=False, breaker_failures=1, breaker_clock=FakeClock()
    )

    async def scenario() -> None:
        elapsed, decisions = await _timed(limiter, ["one-client"] * 6)
        assert elapsed < ONE_CALL, elapsed
        assert not any(decision.allowed for decision in decisions)
        elapsed, decisions = await _timed(limiter, ["one-client"] * 6)
        assert elapsed < AT_ONCE, elapsed
        assert all(int(decision.headers()["Retry-After"]) >= 1 for decision in decisions)

    asyncio.run(scenario())
    assert silent.accepted == 1
    limiter.close()


# --- The real server process ---


def _burst(server: ServerProcess, requests: int = 6) -> tuple[float, list[httpx.Response]]:
    def one(_: int) -> httpx.Response:
        with server.client() as client:
            return client.get(GENERATE_PATH)

    began = time.monotonic()
    with ThreadPoolExecutor(requests) as pool:
        responses = list(pool.map(one, range(requests)))
    return time.monotonic() - began, responses


def _server_env(silent: SilentServer, **extra: str) -> dict[str, str]:
    return {
        **AWS_ENV,
        "AWS_ENDPOINT_URL_DYNAMODB": silent.url,
        "POKEMON_RATE_LIMIT_TABLE": "rate-limits",
        "POKEMON_RATE_LIMIT_PER_MIN": "60",
        "POKEMON_RATE_LIMIT_BREAKER_FAILURES": "1",
        "POKEMON_RATE_LIMIT_BREAKER_COOLDOWN": "60",
        **extra,
    }


def _log_events(server: ServerProcess, message: str) -> list[dict[str, str]]:
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    return [line["extra"] for line in lines if line.get("message") == message]


def test_the_server_answers_quickly_and_says_degraded(silent: SilentServer, server_factory: ServerFactory) -> None:
    server = server_factory(_server_env(silent))
    elapsed, responses = _burst(server)
    assert elapsed < 2.0, elapsed
    assert [response.status_code for response in responses] == [200] * 6  # fail open
    with server.client() as client:
        health = client.get("/health").json()
    assert health["components"]["rateLimit"]["backend"] == "dynamodb"
    assert health["components"]["rateLimit"]["status"] == "degraded"
    assert health["status"] == "degraded"
    connections = silent.accepted

    elapsed, responses = _burst(server)  # open: the store is not asked
    assert elapsed < 1.0, elapsed
    assert [response.status_code for response in responses] == [200] * 6
    assert silent.accepted == connections
    server.stop()  # the log is complete once the process has flushed it
    assert [(e["previous"], e["state"]) for e in _log_events(server, "rate_limit.breaker")] == [("closed", "open")]
    assert len(_log_events(server, "rate_limit.store_failed")) == 1


def test_the_server_fails_closed_with_a_retry_after(silent: SilentServer, server_factory: ServerFactory) -> None:
    server = server_factory(_server_env(silent, POKEMON_RATE_LIMIT_FAIL_OPEN="0"))
    elapsed, responses = _burst(server)
    assert elapsed < 2.0, elapsed
    assert [response.status_code for response in responses] == [429] * 6
    assert all(int(response.headers["Retry-After"]) >= 1 for response in responses)


# --- The pieces: health composition and cancellation ---


def test_the_rate_limit_component_joins_health_without_hiding_warming() -> None:
    from core.health import ComponentHealth
    from core.ratelimit import MemoryRateLimiter
    from core.service import ServiceHealth

    ok = ComponentHealth("files")
    memory = MemoryRateLimiter(TokenBucket.per_minute(5)).health()
    base = ServiceHealth(HealthStatus.OK, "2025-01-01T00:00:00Z", ok, ComponentHealth("local"))
    assert base.with_rate_limit(memory).to_dict()["components"]["rateLimit"] == {  # type: ignore[index]
        "backend": "memory",
        "status": "ok",
        "detail": None,
    }
    degraded = ComponentHealth("dynamodb", HealthStatus.DEGRADED, "breaker open")
    assert base.with_rate_limit(degraded).status is HealthStatus.DEGRADED
    warming = ServiceHealth(HealthStatus.WARMING, base.time, ok, base.names)
    assert warming.with_rate_limit(degraded).status is HealthStatus.WARMING
    assert set(base.to_dict()) == set(base.with_rate_limit(degraded).to_dict())  # the same top-level keys


def test_a_cancelled_take_leaves_the_others_answered(silent: SilentServer) -> None:
    limiter = DynamoDBRateLimiter("rate-limits", TokenBucket.per_minute(60), breaker_clock=FakeClock())

    async def scenario() -> list[RateDecision]:
        first = asyncio.ensure_future(limiter.acquire("one-client"))
        others = [asyncio.ensure_future(limiter.acquire("one-client")) for _ in range(3)]
        await asyncio.sleep(0.1)
        others[0].cancel()  # a client that went away while its take was queued
        first.cancel()  # ... or while its own call was out
        return await asyncio.gather(*others[1:])

    decisions = asyncio.run(scenario())
    assert all(decision.allowed for decision in decisions)
    assert silent.accepted == 1
    limiter.close()
