"""What the service asks of a rate-limit store."""

from __future__ import annotations

from typing import Protocol

from core.health import ComponentHealth
from core.ratelimit.bucket import RateDecision


class RateLimiter(Protocol):
    async def acquire(self, key: str) -> RateDecision:
        """Take one token from `key`'s bucket, or say how long to wait."""
        ...

    def health(self) -> ComponentHealth:
        """The store's backend and state, for `/health` (`components.rateLimit`); never blocks."""
        ...
