"""The token-bucket arithmetic, pure: a state and a time in, a new state and a decision out.

Every limiter store applies this same `TokenBucket.take`; they differ only in where the state lives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

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

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """`headers()` as ASGI sends them (lower-case names, bytes), built directly: the hot path's form."""
        raw = [
            (b"ratelimit-limit", b"%d" % self.limit),
            (b"ratelimit-remaining", b"%d" % self.remaining),
            (b"ratelimit-reset", b"%d" % math.ceil(self.reset_after)),
        ]
        if not self.allowed:
            raw.append((b"retry-after", b"%d" % max(1, math.ceil(self.retry_after))))
        return raw


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
        return BucketState(tokens, now), self.decision(tokens, allowed)

    def decision(self, tokens: float, allowed: bool) -> RateDecision:
        """The decision of a take that left `tokens` in the bucket: a store that runs the take elsewhere (a
        Redis script) gets back exactly what `take` would have answered."""
        return RateDecision(
            allowed=allowed,
            limit=self.capacity,
            remaining=int(tokens),
            reset_after=(self.capacity - tokens) / self.refill_per_second,
            retry_after=0.0 if allowed else (1.0 - tokens) / self.refill_per_second,
        )
