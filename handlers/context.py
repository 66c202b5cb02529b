"""What the routes share, built once per app: the service and the admission rules (auth, then rate limit)."""

from __future__ import annotations

from dataclasses import dataclass

from core.auth import AuthOutcome, BearerAuth
from core.errors import RateLimited, Unauthorized
from core.eventlog import log
from core.metrics import Metrics
from core.ratelimit import RateLimiter
from core.service import CreatureService


@dataclass(frozen=True, slots=True)
class AppContext:
    service: CreatureService
    auth: BearerAuth
    limiter: RateLimiter | None
    metrics: Metrics

    def authenticate(self, authorization: str | None, client: str) -> None:
        """Raise `Unauthorized` unless the bearer token is right (or auth is off)."""
        outcome = self.auth.check(authorization)
        if outcome is AuthOutcome.ALLOWED:
            return
        log.info("auth.rejected", reason=outcome.value, client=client)
        raise Unauthorized(invalid=outcome is AuthOutcome.INVALID)

    async def take_token(self, client: str) -> list[tuple[bytes, bytes]]:
        """Spend one of `client`'s tokens; returns the `RateLimit-*` headers (ASGI's raw form), or raises
        `RateLimited`."""
        if self.limiter is None:
            return []
        decision = await self.limiter.acquire(client)
        if not decision.allowed:
            log.info("rate_limit.rejected", client=client, retry_after=decision.headers()["Retry-After"])
            self.metrics.rate_limited()
            raise RateLimited(decision)
        return decision.raw_headers()
