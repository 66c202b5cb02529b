"""What the routes share, built once per app: the service and the admission rules (auth, then rate limit)."""

from __future__ import annotations

from dataclasses import dataclass

from core.auth import AuthOutcome, BearerAuth
from core.metrics import metrics
from core.ratelimit import RateLimiter
from core.service import CreatureService
from core.telemetry import log
from handlers.errors import ApiError

REALM = 'Bearer realm="pokemon"'


@dataclass(frozen=True, slots=True)
class AppContext:
    service: CreatureService
    auth: BearerAuth
    limiter: RateLimiter | None

    def authenticate(self, authorization: str | None, client: str) -> None:
        """Raise 401 unless the bearer token is right (or auth is off)."""
        outcome = self.auth.check(authorization)
        if outcome is AuthOutcome.ALLOWED:
            return
        invalid = outcome is AuthOutcome.INVALID
        log.info("auth.rejected", reason=outcome.value, client=client)
        challenge = REALM + (', error="invalid_token"' if invalid else "")
        message = "The bearer token is invalid." if invalid else "A bearer token is required."
        raise ApiError(401, "UNAUTHORIZED", message, {"WWW-Authenticate": challenge})

    async def take_token(self, client: str) -> dict[str, str]:
        """Spend one of `client`'s tokens; returns the `RateLimit-*` headers, or raises 429."""
        if self.limiter is None:
            return {}
        decision = await self.limiter.acquire(client)
        headers = decision.headers()
        if not decision.allowed:
            log.info("rate_limit.rejected", client=client, retry_after=headers["Retry-After"])
            metrics().rate_limited()
            raise ApiError(429, "RATE_LIMITED", "Too many requests; retry later.", headers)
        return headers
