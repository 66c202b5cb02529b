"""A budget of failed authentication attempts per client, so that guessing the bearer token is slow.

Only a 401 spends from it (`record_failure`), through an ordinary `RateLimiter` of the same store as the
generation limit, under the key `auth:<client>`. Checking whether a client is throttled (`blocked`) must
not spend anything, and must cost no store call on every authenticated request: so the guard remembers,
in memory, until when a client's bucket is empty — learned from the take that spent its last token (the
decision says `remaining` 0) or from a refused take. Past the budget every attempt, the right token
included, is refused until the bucket holds a token again: a guesser cannot tell a right guess.

With a shared store (a DynamoDB table, or Redis) the count of failures is exact across instances (every
failure is a conditional write, or one atomic script call), but an instance learns that a client is
throttled only from its own takes: another instance serves a right token until that client fails there
once. Past the budget, a guesser can tell a right guess at most once per instance it reaches that has not
yet seen it fail.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

from core.ratelimit.bucket import Clock, RateDecision
from core.ratelimit.limiter import RateLimiter

KEY_PREFIX: Final = "auth:"


class AuthFailureGuard:
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        per_minute: int,
        max_clients: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if per_minute < 1 or max_clients < 1:
            raise ValueError("per_minute and max_clients must be ≥ 1")
        self._limiter = limiter
        self._capacity = per_minute
        self._refill_per_second = per_minute / 60.0
        self._max_clients = max_clients
        self._clock = clock
        self._blocked_until: OrderedDict[str, float] = OrderedDict()

    def blocked(self, client: str) -> RateDecision | None:
        """The refusal while `client` has no failed attempt left, else None; spends nothing."""
        until = self._blocked_until.get(client)
        if until is None:
            return None
        wait = until - self._clock()
        if wait <= 0:
            del self._blocked_until[client]
            return None
        return self._refusal(wait)

    async def record_failure(self, client: str) -> RateDecision | None:
        """Spend one failed attempt; the refusal if there was none left to spend, else None."""
        decision = await self._limiter.acquire(KEY_PREFIX + client)
        if decision.allowed and decision.remaining > 0:
            return None
        # The bucket is empty: the time until it holds one token again, from what the decision tells.
        wait = decision.retry_after if not decision.allowed else self._until_one_token(decision)
        self._remember(client, self._clock() + wait)
        return None if decision.allowed else decision

    def _until_one_token(self, decision: RateDecision) -> float:
        tokens = self._capacity - decision.reset_after * self._refill_per_second
        return max(0.0, (1.0 - tokens) / self._refill_per_second)

    def _remember(self, client: str, until: float) -> None:
        self._blocked_until.pop(client, None)
        self._blocked_until[client] = until
        if len(self._blocked_until) > self._max_clients:
            self._blocked_until.popitem(last=False)

    def _refusal(self, wait: float) -> RateDecision:
        return RateDecision(
            allowed=False,
            limit=self._capacity,
            remaining=0,
            reset_after=wait + (self._capacity - 1) / self._refill_per_second,
            retry_after=wait,
        )
