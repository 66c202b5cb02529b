"""The default limiter store: buckets in this process's memory."""

from __future__ import annotations

import time
from collections import OrderedDict

from core.health import ComponentHealth
from core.ratelimit.bucket import BucketState, Clock, RateDecision, TokenBucket


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

    def health(self) -> ComponentHealth:
        return ComponentHealth("memory")  # no store to fail

    def _forget_full(self, now: float) -> None:
        # The least recently used end holds the oldest buckets, the first to be full again; stopping at
        # the first that is not keeps this amortised O(1) per call.
        states = self._states
        while states:
            oldest_key = next(iter(states))
            if not self._bucket.is_full(states[oldest_key], now):
                return
            del states[oldest_key]
