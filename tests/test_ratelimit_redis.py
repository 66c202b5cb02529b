"""Token buckets in a real redis-server: the same decisions as `TokenBucket.take`, exact across processes,
expiring idle keys, surviving a script flush, tampering, a dead and a hung store."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.health import HealthStatus
from core.ratelimit import MemoryRateLimiter, RateDecision, TokenBucket
from core.ratelimit.redis import FAIL_CLOSED_RETRY_AFTER, RedisRateLimiter
from core.sharedstore import SharedStore
from tests.support.clock import EPOCH, FakeClock
from tests.support.ports import LOOPBACK
from tests.support.redis_server import RedisServer
from tests.support.released_together import run_processes_together
from tests.support.silent_server import SilentServer

T = TypeVar("T")


def _key() -> str:
    return f"client-{uuid.uuid4().hex}"


def _with_store(url: str, use: Callable[[SharedStore], Awaitable[T]], **options: float) -> T:
    """`use(store)` on one event loop with a store of its own (the client is bound to its first loop)."""

    async def main() -> T:
        store = SharedStore.from_url(url, **options)  # type: ignore[arg-type]
        try:
            return await use(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def _redis_key(key: str) -> str:
    return f"pokemon:ratelimit:{key}"


def test_capacity_then_refusal_then_refill(redis_server: RedisServer) -> None:
    clock = FakeClock(EPOCH)
    key = _key()

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(3), clock=clock)
        decisions = [await limiter.acquire(key) for _ in range(4)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert [d.remaining for d in decisions] == [2, 1, 0, 0]
        assert decisions[-1].headers()["Retry-After"] == "20"  # 3 per minute: one token every 20 s
        clock.advance(19.9)
        assert not (await limiter.acquire(key)).allowed
        clock.advance(0.1)
        assert (await limiter.acquire(key)).allowed
        assert not (await limiter.acquire(key)).allowed
        assert (await limiter.acquire(_key())).allowed  # another client, another bucket
        assert limiter.store_failures == 0
        assert limiter.health().backend == "redis" and limiter.health().status is HealthStatus.OK

    _with_store(redis_server.url, use)


# Any float step: the same floats must come out of Lua as out of Python, rounding included.
steps = st.lists(st.tuples(st.floats(0.0, 45.0), st.integers(0, 1)), min_size=1, max_size=14)
buckets = st.sampled_from(
    [TokenBucket.per_minute(4), TokenBucket.per_minute(7), TokenBucket(capacity=3, refill_per_second=0.3)]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=steps, bucket=buckets)
def test_decisions_are_those_of_token_bucket_take(
    redis_server: RedisServer, script: list[tuple[float, int]], bucket: TokenBucket
) -> None:
    clock = FakeClock(EPOCH)
    memory = MemoryRateLimiter(bucket, clock=clock)
    keys = [_key(), _key()]

    async def use(store: SharedStore) -> None:
        # Two instances (two limiters, as two processes would have) on one Redis: one bucket per key.
        instances = [RedisRateLimiter(store, bucket, clock=clock), RedisRateLimiter(store, bucket, clock=clock)]
        for position, (advance, which) in enumerate(script):
            clock.advance(advance)
            expected = memory.acquire_now(keys[which])
            got = await instances[position % 2].acquire(keys[which])
            assert got == expected  # bit for bit: floats included
            assert got.headers() == expected.headers()

    _with_store(redis_server.url, use)


def test_a_clock_that_lags_never_refills_an_interval_twice(redis_server: RedisServer) -> None:
    ahead, behind = FakeClock(1000.0), FakeClock(990.0)
    bucket = TokenBucket(capacity=2, refill_per_second=1.0)
    key = _key()

    async def use(store: SharedStore) -> None:
        first, lagging = RedisRateLimiter(store, bucket, clock=ahead), RedisRateLimiter(store, bucket, clock=behind)
        assert (await first.acquire(key)).allowed
        assert (await first.acquire(key)).allowed
        # Ten seconds behind: computed at the stored time, so nothing refilled, and the time is kept.
        assert not (await lagging.acquire(key)).allowed
        assert float(redis_server.client().hget(_redis_key(key), "updated_at") or 0) == 1000.0
        ahead.advance(1.0)
        assert (await first.acquire(key)).allowed
        assert not (await lagging.acquire(key)).allowed

    _with_store(redis_server.url, use)


def test_a_bucket_key_lives_until_the_bucket_is_full_again(redis_server: RedisServer) -> None:
    key = _key()

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(3))  # the real clock
        await limiter.acquire(key)
        sync = redis_server.client()
        # One token missing at one every 20 s: full again in 20 s, plus the 60 s margin.
        assert 79_000 < sync.pttl(_redis_key(key)) <= 80_000
        await limiter.acquire(key)
        assert 99_000 < sync.pttl(_redis_key(key)) <= 100_000
        assert sync.hgetall(_redis_key(key)).keys() == {b"tokens", b"updated_at"}

    _with_store(redis_server.url, use)


def test_idle_keys_expire_and_a_missing_key_is_a_full_bucket(redis_server: RedisServer) -> None:
    key = _key()
    sync = redis_server.client()

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket(capacity=2, refill_per_second=20.0), ttl_margin=0.0)
        await limiter.acquire(key)
        assert (await limiter.acquire(key)).remaining == 0
        assert 0 < sync.pttl(_redis_key(key)) <= 100  # two tokens at 20 a second
        await asyncio.sleep(0.15)  # past the TTL: a read of an expired key finds none, whenever Redis evicts it
        assert not sync.exists(_redis_key(key))
        assert (await limiter.acquire(key)).remaining == 1  # what a full bucket gives

    _with_store(redis_server.url, use)


def test_the_script_comes_back_after_a_flush_and_a_restart(redis_server: RedisServer) -> None:
    key = _key()
    sync = redis_server.client()
    clock = FakeClock(EPOCH)

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(5), clock=clock)
        assert (await limiter.acquire(key)).remaining == 4
        sync.script_flush()
        assert (await limiter.acquire(key)).remaining == 3  # NOSCRIPT, reloaded, the same bucket
        redis_server.restart()  # the same port, empty: no script, no buckets
        decisions = [await limiter.acquire(key) for _ in range(2)]
        assert limiter.store_failures <= 1  # at most the call on the connection the restart broke
        assert decisions[-1].remaining == 4 - (1 - limiter.store_failures)
        assert redis_server.client().script_exists(limiter._script.sha) == [True]

    _with_store(redis_server.url, use)


def test_the_script_makes_one_call_per_take(redis_server: RedisServer) -> None:
    key = _key()
    sync = redis_server.client()

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(5))
        await limiter.acquire(key)  # loads the script (NOSCRIPT, then SCRIPT LOAD) on a fresh server
        sync.config_resetstat()
        for _ in range(10):
            await limiter.acquire(key)

    _with_store(redis_server.url, use)
    stats = sync.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 10
    # Commands run by the script count here too; nothing else went out (no SCRIPT LOAD, no PING, no read).
    inside_the_script = {"cmdstat_type", "cmdstat_hmget", "cmdstat_hset", "cmdstat_pexpire"}
    assert set(stats) - inside_the_script - {"cmdstat_config|resetstat"} == {"cmdstat_evalsha"}


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "garbage", "updated_at": "1"}), id="not-a-number"),
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "inf", "updated_at": "1"}), id="infinite-tokens"),
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "nan", "updated_at": "1"}), id="nan-tokens"),
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "1e300", "updated_at": "1"}), id="huge-tokens"),
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "-1e300", "updated_at": "1"}), id="negative-tokens"),
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "1", "updated_at": "inf"}), id="infinite-time"),
        pytest.param(lambda c, k: c.hset(k, mapping={"tokens": "1", "updated_at": "nan"}), id="nan-time"),
        pytest.param(lambda c, k: c.hset(k, mapping={"other": "1"}), id="missing-fields"),
        pytest.param(lambda c, k: c.set(k, "100"), id="a-string-key"),
        pytest.param(lambda c, k: c.rpush(k, "100"), id="a-list-key"),
    ],
)
def test_a_tampered_bucket_counts_as_a_full_one_and_mints_no_more(
    redis_server: RedisServer, tamper: Callable[[object, str], object]
) -> None:
    key = _key()
    tamper(redis_server.client(), _redis_key(key))

    async def use(store: SharedStore) -> list[RateDecision]:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(3), clock=FakeClock(EPOCH))
        decisions = [await limiter.acquire(key) for _ in range(5)]
        assert limiter.store_failures == 0 and store.failed_calls == 0  # no error, no breaker count
        return decisions

    decisions = _with_store(redis_server.url, use)
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert decisions[0].remaining == 2


def _failing_store(url: str, use: Callable[[SharedStore], Awaitable[T]]) -> T:
    return _with_store(url, use, timeout=0.2, breaker_failures=3, breaker_cooldown=30.0)


async def _timed(limiter: RedisRateLimiter, key: str) -> tuple[RateDecision, float]:
    started = time.perf_counter()
    decision = await limiter.acquire(key)
    return decision, time.perf_counter() - started


def test_fail_open_answers_from_this_process_budget_while_redis_is_down(redis_server: RedisServer) -> None:
    key = _key()

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(3), clock=FakeClock(EPOCH))
        assert (await limiter.acquire(key)).remaining == 2
        redis_server.kill()
        answers = [await _timed(limiter, key) for _ in range(5)]
        # A per-process bucket of its own: three admitted, then refused, never an exception.
        assert [d.allowed for d, _ in answers] == [True, True, True, False, False]
        assert [d.remaining for d, _ in answers[:3]] == [2, 1, 0]
        assert all(seconds < 0.2 + 0.3 for _, seconds in answers)
        assert all(seconds < 0.05 for _, seconds in answers[3:])  # the breaker is open: no call at all
        assert limiter.store_failures == 5
        health = limiter.health()
        assert health.backend == "redis" and health.status is HealthStatus.DEGRADED
        assert health.detail is not None and "admitted on this process's own budget" in health.detail

    _failing_store(redis_server.url, use)


def test_fail_closed_refuses_with_a_retry_after_while_redis_is_down(redis_server: RedisServer) -> None:
    key = _key()

    async def use(store: SharedStore) -> None:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(3), fail_open=False)
        assert (await limiter.acquire(key)).allowed
        redis_server.kill()
        for _ in range(4):
            decision = await limiter.acquire(key)
            assert not decision.allowed
            assert decision.retry_after == FAIL_CLOSED_RETRY_AFTER
            assert decision.headers()["Retry-After"] == "5"
        health = limiter.health()
        assert health.status is HealthStatus.DEGRADED and health.detail is not None and "refused" in health.detail

    _failing_store(redis_server.url, use)


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_hung_redis_costs_one_timeout_per_call_until_the_breaker_opens(fail_open: bool) -> None:
    with SilentServer() as silent:
        port = silent.url.rsplit(":", 1)[1]

        async def use(store: SharedStore) -> list[tuple[RateDecision, float]]:
            limiter = RedisRateLimiter(store, TokenBucket.per_minute(3), fail_open=fail_open)
            return [await _timed(limiter, "client") for _ in range(6)]

        answers = _failing_store(f"redis://{LOOPBACK}:{port}/0", use)
    seconds = [s for _, s in answers]
    assert all(0.15 < s < 0.2 + 0.3 for s in seconds[:3])  # each bounded by the store's 0.2 s limit
    assert all(s < 0.05 for s in seconds[3:])  # then the breaker answers at once
    assert [d.allowed for d, _ in answers] == ([True, True, True, False, False, False] if fail_open else [False] * 6)


def test_exactly_capacity_is_admitted_across_processes_and_threads(redis_server: RedisServer) -> None:
    key = _key()
    command = [sys.executable, "-m", "tests.support.limiter_worker", redis_server.url, key, "50", "4", "15"]
    results = run_processes_together(command, 4, timeout=60)  # released together: 16 threads, 240 takes on 50
    assert all(result["failures"] == 0 for result in results)
    assert sum(result["admitted"] for result in results) == 50


def test_concurrent_takes_share_round_trips_and_stay_exact(redis_server: RedisServer) -> None:
    clock = FakeClock(EPOCH)
    keys = [_key() for _ in range(4)]

    async def use(store: SharedStore) -> tuple[int, list[RateDecision], list[RateDecision]]:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(30), clock=clock)
        memory = MemoryRateLimiter(TokenBucket.per_minute(30), clock=clock)
        await limiter.acquire("warm-up")  # loads the script
        before = limiter.round_trips
        order = [keys[index % len(keys)] for index in range(200)]
        shared = await asyncio.gather(*(limiter.acquire(key) for key in order))
        return limiter.round_trips - before, list(shared), [memory.acquire_now(key) for key in order]

    round_trips, shared, alone = _with_store(redis_server.url, use)
    assert round_trips < 10  # 200 takes: a handful of pipelines, not 200 calls
    assert shared == alone  # in arrival order, exactly what one process's memory decides


def test_a_caller_that_goes_away_takes_nothing_from_the_others(redis_server: RedisServer) -> None:
    key = _key()

    async def use(store: SharedStore) -> list[int]:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(10))
        calls = [asyncio.create_task(limiter.acquire(key)) for _ in range(5)]
        await asyncio.sleep(0)
        calls[2].cancel()  # a client disconnect while its take is queued or out
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(results[2], asyncio.CancelledError)
        after = await limiter.acquire(key)
        return [result.remaining for result in results if isinstance(result, RateDecision)] + [after.remaining]

    remaining = _with_store(redis_server.url, use)
    # The take already sent was spent or not; either way nobody else's answer was lost or doubled.
    assert remaining[:4] == sorted(remaining[:4], reverse=True) and remaining[-1] in (4, 5)
    assert len(set(remaining)) == len(remaining)


def test_noscript_in_the_middle_of_a_pipeline_reloads_and_resends(redis_server: RedisServer) -> None:
    sync = redis_server.client()
    clock = FakeClock(EPOCH)

    async def use(store: SharedStore) -> list[int]:
        limiter = RedisRateLimiter(store, TokenBucket.per_minute(5), clock=clock)
        await limiter.acquire("warm-up")
        sync.script_flush()
        decisions = await asyncio.gather(*(limiter.acquire("same") for _ in range(6)))
        assert limiter.store_failures == 0
        return [decision.remaining for decision in decisions]

    assert _with_store(redis_server.url, use) == [4, 3, 2, 1, 0, 0]
