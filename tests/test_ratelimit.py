"""Token buckets on an injected clock: exact arithmetic, bounded memory, honest headers."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ratelimit import BucketState, MemoryRateLimiter, TokenBucket
from tests.support.clock import FakeClock


def test_a_full_bucket_admits_capacity_then_refuses() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(TokenBucket.per_minute(3), clock=clock)
    decisions = [limiter.acquire_now("a") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    refused = decisions[-1]
    assert refused.retry_after == pytest.approx(20.0)  # 3 per minute: one token every 20 s
    assert refused.headers()["Retry-After"] == "20"
    assert refused.headers()["RateLimit-Limit"] == "3"
    assert refused.headers()["RateLimit-Reset"] == "60"


def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(TokenBucket.per_minute(60), clock=clock)
    for _ in range(60):
        assert limiter.acquire_now("a").allowed
    assert not limiter.acquire_now("a").allowed
    clock.advance(0.999)
    assert not limiter.acquire_now("a").allowed
    clock.advance(0.002)
    assert limiter.acquire_now("a").allowed
    assert not limiter.acquire_now("a").allowed


def test_retry_after_is_a_whole_number_of_at_least_one_second() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(TokenBucket.per_minute(600), clock=clock)  # a token every 0.1 s
    for _ in range(600):
        limiter.acquire_now("a")
    refused = limiter.acquire_now("a")
    assert not refused.allowed
    assert refused.headers()["Retry-After"] == "1"


def test_clients_have_separate_buckets() -> None:
    limiter = MemoryRateLimiter(TokenBucket.per_minute(1), clock=FakeClock())
    assert limiter.acquire_now("a").allowed
    assert not limiter.acquire_now("a").allowed
    assert limiter.acquire_now("b").allowed


def test_the_least_recently_used_bucket_goes_first_when_full() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(TokenBucket.per_minute(2), max_buckets=2, clock=clock)
    limiter.acquire_now("a")
    limiter.acquire_now("b")
    limiter.acquire_now("a")  # "b" is now the least recently used
    limiter.acquire_now("c")
    assert len(limiter) == 2
    # "a" was kept: it has one token spent twice over -> empty.
    assert not limiter.acquire_now("a").allowed


def test_idle_buckets_that_refilled_are_forgotten() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(TokenBucket.per_minute(60), clock=clock)
    for key in range(100):
        limiter.acquire_now(f"client-{key}")
    assert len(limiter) == 100
    clock.advance(1.01)  # each had spent one token: full again after a second
    limiter.acquire_now("newcomer")
    assert len(limiter) == 1


def test_a_clock_stepping_back_does_not_drain_or_fill() -> None:
    bucket = TokenBucket.per_minute(10)
    state = BucketState(tokens=5.0, updated_at=100.0)
    assert bucket.level(state, 50.0) == 5.0


def test_acquire_is_awaitable() -> None:
    limiter = MemoryRateLimiter(TokenBucket.per_minute(1), clock=FakeClock())
    assert asyncio.run(limiter.acquire("a")).allowed


@pytest.mark.parametrize("capacity", [0, -1])
def test_a_bucket_must_hold_a_token(capacity: int) -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(TokenBucket(capacity=capacity, refill_per_second=1.0))


steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=30, allow_nan=False), st.integers(min_value=1, max_value=5)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200)
@given(per_minute=st.integers(min_value=1, max_value=1000), script=steps)
def test_admissions_never_exceed_capacity_plus_refill(per_minute: int, script: list[tuple[float, int]]) -> None:
    clock = FakeClock(0.0)
    limiter = MemoryRateLimiter(TokenBucket.per_minute(per_minute), clock=clock)
    admitted = 0
    for pause, burst in script:
        clock.advance(pause)
        for _ in range(burst):
            decision = limiter.acquire_now("k")
            admitted += decision.allowed
            assert 0 <= decision.remaining <= per_minute
            assert decision.retry_after >= 0
    assert admitted <= per_minute + per_minute / 60.0 * clock.now + 1e-9


@given(
    per_minute=st.integers(min_value=1, max_value=1000),
    start=st.floats(min_value=0, max_value=1000, allow_nan=False),
    now=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    tokens=st.floats(min_value=0, max_value=1000, allow_nan=False),
)
def test_bucket_level_stays_between_zero_and_capacity(per_minute: int, start: float, now: float, tokens: float) -> None:
    bucket = TokenBucket.per_minute(per_minute)
    state = BucketState(tokens=min(tokens, per_minute), updated_at=start)
    new_state, decision = bucket.take(state, now)
    assert 0 <= new_state.tokens <= per_minute
    assert decision.allowed == (bucket.level(state, now) >= 1)
