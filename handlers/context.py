"""What the routes share, built once per app: the service and the admission rules (auth, then rate limit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.auth import AuthOutcome, BearerAuth
from core.errors import RateLimited, Unauthorized
from core.eventlog import log
from core.metrics import Metrics
from core.ratelimit import RateDecision, RateLimiter
from core.ratelimit.authfailures import AuthFailureGuard
from core.service import CreatureService

if TYPE_CHECKING:
    from core.sharedstore import SharedStore  # only with POKEMON_REDIS_URL: nothing to load otherwise


@dataclass(frozen=True, slots=True)
class AppContext:
    service: CreatureService
    auth: BearerAuth
    limiter: RateLimiter | None
    metrics: Metrics
    auth_failures: AuthFailureGuard | None = None
    shared_store: SharedStore | None = None

    async def authenticate(self, authorization: str | None, client: str, key: str) -> None:
        """Raise `Unauthorized` unless the bearer token is right (or auth is off), or `RateLimited` while
        `key` has spent its failed attempts: then even the right token is refused, so a guesser learns nothing.

        Only a wrong token spends a failed attempt; a missing one is no guess (a probe, a browser)."""
        guard = self.auth_failures
        if guard is not None:
            refusal = guard.blocked(key)
            if refusal is not None:
                self._throttled(client, refusal)
        outcome = self.auth.check(authorization)
        if outcome is AuthOutcome.ALLOWED:
            return
        log.info("auth.rejected", reason=outcome.value, client=client)
        if guard is not None and outcome is AuthOutcome.INVALID:
            refusal = await guard.record_failure(key)
            if refusal is not None:  # none left to spend (another instance saw the others)
                self._throttled(client, refusal)
        raise Unauthorized(invalid=outcome is AuthOutcome.INVALID)

    def _throttled(self, client: str, refusal: RateDecision) -> None:
        log.info("auth.throttled", client=client, retry_after=refusal.headers()["Retry-After"])
        raise RateLimited(refusal)

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
