"""The shared store's connection (core/sharedstore.py) against a real redis-server, a dead port and a hung one.

What every user of the store relies on: a call is bounded by the timeout, a store known to be down costs
nothing (the breaker answers at once), it comes back by itself, and an outage is two log lines, not one per
call. Settings and wiring: the URL's password never reaches a log line, and nothing loads redis-py unless a
URL is set.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from core.breaker import BreakerState
from core.config import load_settings
from core.errors import ConfigError
from core.eventlog import configure_logging
from core.health import HealthStatus
from core.sharedstore import SharedStore, StoreUnavailable
from core.wiring import build_shared_store
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer
from tests.support.silent_server import SilentServer


def ping(client: Any) -> Awaitable[Any]:
    return client.ping()  # type: ignore[no-any-return]


async def outcome(store: SharedStore, operation: Callable[[Any], Awaitable[Any]] = ping) -> tuple[str, float]:
    began = time.perf_counter()
    try:
        result = await store.run(operation)
    except StoreUnavailable as exc:
        return f"unavailable:{exc.reason}", time.perf_counter() - began
    return f"ok:{result}", time.perf_counter() - began


def store_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["message"] == "redis.breaker"]


@pytest.fixture
def log_stream() -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level="INFO", stream=stream, background=False)
    return stream


def test_a_killed_store_opens_the_breaker_and_comes_back_by_itself(
    redis_server: RedisServer, log_stream: io.StringIO
) -> None:
    async def scenario() -> None:
        store = SharedStore.from_url(redis_server.url, timeout=0.5, breaker_failures=2, breaker_cooldown=0.3)
        assert (await outcome(store))[0] == "ok:True"
        assert store.health().status is HealthStatus.OK

        redis_server.kill()
        first, second, third = [await outcome(store) for _ in range(3)]
        assert first[0].startswith("unavailable:") and second[0].startswith("unavailable:")
        assert third[0] == "unavailable:breaker open" and third[1] < 0.05
        assert store.state is BreakerState.OPEN and not store.available
        health = store.health()
        assert health.status is HealthStatus.DEGRADED and health.backend == "redis"
        assert "unreachable" in (health.detail or "")

        redis_server.start()  # the same address, as a restarted Redis would be
        await asyncio.sleep(0.35)
        assert store.available  # a probe is due
        assert (await outcome(store))[0] == "ok:True"
        assert store.state is BreakerState.CLOSED and store.health().status is HealthStatus.OK
        await store.aclose()

    asyncio.run(scenario())
    lines = store_lines(log_stream)
    # One line when it went away, one when it came back: the failed calls in between add none.
    assert [(line["extra"]["previous"], line["extra"]["state"]) for line in lines] == [
        ("closed", "open"),
        ("half_open", "closed"),
    ]
    assert lines[0]["level"] == "WARNING" and lines[0]["extra"]["reason"]


def test_a_hung_store_costs_one_timeout_per_call_until_the_breaker_opens(log_stream: io.StringIO) -> None:
    async def scenario(url: str) -> list[tuple[str, float]]:
        store = SharedStore.from_url(url, timeout=0.2, breaker_failures=3, breaker_cooldown=60)
        results = [await outcome(store) for _ in range(6)]
        await store.aclose()
        return results

    with SilentServer() as silent:
        results = asyncio.run(scenario(silent.url.replace("http://", "redis://")))
        accepted = silent.accepted
    assert [result for result, _ in results[:3]] == ["unavailable:timeout"] * 3
    assert all(0.15 < seconds < 0.6 for _, seconds in results[:3])
    assert [result for result, _ in results[3:]] == ["unavailable:breaker open"] * 3
    assert all(seconds < 0.05 for _, seconds in results[3:])
    assert accepted <= 3  # no call went out once the breaker was open
    assert len(store_lines(log_stream)) == 1


def test_a_refused_connection_fails_at_once() -> None:
    async def scenario() -> tuple[str, float]:
        store = SharedStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=2.0)
        try:
            return await outcome(store)
        finally:
            await store.aclose()

    result, seconds = asyncio.run(scenario())
    assert result.startswith("unavailable:") and seconds < 0.5


def test_a_cancelled_probe_does_not_keep_the_store_shut(redis_server: RedisServer) -> None:
    async def scenario() -> str:
        store = SharedStore.from_url(redis_server.url, timeout=0.5, breaker_failures=1, breaker_cooldown=0.05)
        redis_server.kill()
        await outcome(store)
        assert store.state is BreakerState.OPEN
        redis_server.start()
        await asyncio.sleep(0.1)

        async def slow(client: Any) -> Any:
            await asyncio.sleep(1)
            return await client.ping()

        probe = asyncio.create_task(store.run(slow))
        await asyncio.sleep(0.05)
        probe.cancel()  # a client went away while its request held the probe
        with pytest.raises(asyncio.CancelledError):
            await probe
        result, _ = await outcome(store)
        await store.aclose()
        return result

    assert asyncio.run(scenario()) == "ok:True"


def test_password_database_and_prefix_come_from_the_settings(tmp_path: Any) -> None:
    server = RedisServer(tmp_path, password="s3cret pass").start()
    try:
        url = server.url.replace("/0", "/3")
        settings = load_settings(POKEMON_REDIS_URL=url, POKEMON_REDIS_PREFIX="fleet-a:")
        store = build_shared_store(settings)
        assert store is not None
        assert "s3cret" not in store.address and "***" in store.address
        assert "s3cret" not in json.dumps(settings.public_view())

        async def scenario() -> None:
            await store.run(lambda client: client.set(store.key("probe"), "1"))
            await store.aclose()

        asyncio.run(scenario())
        with server.client() as client:
            client.select(3)
            assert client.get("fleet-a:probe") == b"1"

        wrong = build_shared_store(load_settings(POKEMON_REDIS_URL=server.url.replace("s3cret%20pass", "guess")))
        assert wrong is not None
        assert asyncio.run(outcome(wrong))[0].startswith("unavailable:")
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379",
        "127.0.0.1:6379",
        "unix:///tmp/redis.sock",
        "redis://:pass word@h:6379",
        "redis://h\x00st:6379",
    ],
)
def test_only_redis_urls_are_accepted(url: str) -> None:
    with pytest.raises(ConfigError, match="POKEMON_REDIS_URL"):
        load_settings(POKEMON_REDIS_URL=url)


def test_a_bad_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(POKEMON_REDIS_URL="http://user:hunter2@cache:6379/0")
    assert "hunter2" not in str(caught.value)


def test_no_url_no_store() -> None:
    # Nor any redis-py import: tests/test_startup_imports.py checks what a default start-up loads.
    assert build_shared_store(load_settings(POKEMON_REDIS_URL="")) is None
    assert build_shared_store(load_settings()) is None


def test_an_error_reply_fails_the_call_not_the_store(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        client.set("pokemon:not-a-list", "text")

    async def scenario() -> list[str]:
        store = SharedStore.from_url(redis_server.url, timeout=0.5, breaker_failures=1, breaker_cooldown=60)
        results = [(await outcome(store, lambda client: client.lpush("pokemon:not-a-list", "x")))[0] for _ in range(3)]
        results.append((await outcome(store))[0])
        assert store.state is BreakerState.CLOSED and store.health().status is HealthStatus.OK
        await store.aclose()
        return results

    assert asyncio.run(scenario()) == ["unavailable:error reply"] * 3 + ["ok:True"]
