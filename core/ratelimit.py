"""Per-client token buckets.

`TokenBucket` is the pure arithmetic (refill, then take one); a `RateLimiter` applies it to a key and
keeps the state somewhere: `MemoryRateLimiter` in this process, a shared store (DynamoDB) behind the
same protocol when several instances must agree.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from core.config import Settings

Clock = Callable[[], float]


# The two per-request value types are NamedTuples rather than frozen dataclasses: just as immutable, and
# several times cheaper to create on the hot path.
class BucketState(NamedTuple):
    tokens: float
    updated_at: float


class RateDecision(NamedTuple):
    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the bucket is full again
    retry_after: float  # seconds until one token is available (0 when allowed)

    def headers(self) -> dict[str, str]:
        """`RateLimit-*` fields (IETF draft) plus `Retry-After` when refused; integer seconds."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


@dataclass(frozen=True, slots=True)
class TokenBucket:
    capacity: int
    refill_per_second: float

    @classmethod
    def per_minute(cls, requests: int) -> TokenBucket:
        return cls(capacity=requests, refill_per_second=requests / 60.0)

    def level(self, state: BucketState | None, now: float) -> float:
        if state is None:
            return float(self.capacity)
        elapsed = max(0.0, now - state.updated_at)  # a clock stepping back must not drain a bucket
        return min(float(self.capacity), state.tokens + elapsed * self.refill_per_second)

    def is_full(self, state: BucketState, now: float) -> bool:
        return self.level(state, now) >= self.capacity

    def take(self, state: BucketState | None, now: float) -> tuple[BucketState, RateDecision]:
        tokens = self.level(state, now)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        missing = self.capacity - tokens
        decision = RateDecision(
            allowed=allowed,
            limit=self.capacity,
            remaining=int(tokens),
            reset_after=missing / self.refill_per_second,
            retry_after=0.0 if allowed else (1.0 - tokens) / self.refill_per_second,
        )
        return BucketState(tokens, now), decision


class RateLimiter(Protocol):
    async def acquire(self, key: str) -> RateDecision:
        """Take one token from `key`'s bucket, or say how long to wait."""
        ...


class MemoryRateLimiter:
    """Buckets in this process's memory, bounded in number.

    At most `max_buckets` keys are held (the least recently seen is dropped first), and buckets that have
    refilled completely are forgotten: a full bucket is the same as no bucket, so forgetting it is exact.
    """

    def __init__(self, bucket: TokenBucket, *, max_buckets: int = 100_000, clock: Clock = time.monotonic) -> None:
        if bucket.capacity < 1 or bucket.refill_per_second <= 0:
            raise ValueError("a bucket needs a capacity ≥ 1 and a refill rate above 0")
        if max_buckets < 1:
            raise ValueError("max_buckets must be ≥ 1")
        self._bucket = bucket
        self._max_buckets = max_buckets
        self._clock = clock
        self._states: OrderedDict[str, BucketState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def acquire_now(self, key: str) -> RateDecision:
        now = self._clock()
        state, decision = self._bucket.take(self._states.pop(key, None), now)
        self._forget_full(now)
        self._states[key] = state
        if len(self._states) > self._max_buckets:
            self._states.popitem(last=False)
        return decision

    async def acquire(self, key: str) -> RateDecision:
        return self.acquire_now(key)

    def _forget_full(self, now: float) -> None:
        # The least recently used end holds the oldest buckets, the first to be full again; stopping at
        # the first that is not keeps this amortised O(1) per call.
        states = self._states
        while states:
            oldest_key = next(iter(states))
            if not self._bucket.is_full(states[oldest_key], now):
                return
            del states[oldest_key]


def build_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter the settings ask for: none, this process's memory, or a table shared by all instances."""
    if not settings.rate_limit_enabled:
        return None
    if settings.rate_limit_table:
        from core.ratelimit_dynamodb import DynamoDBRateLimiter  # boto3 only when a table is configured

        return DynamoDBRateLimiter.from_settings(settings)
    return MemoryRateLimiter(
        TokenBucket.per_minute(settings.rate_limit_per_min), max_buckets=settings.rate_limit_max_clients
    )
