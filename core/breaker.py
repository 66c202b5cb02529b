"""A circuit breaker for calls to a flaky dependency, driven by an injected clock.

Closed: calls go through and consecutive failures are counted. After `failure_threshold` of them it
opens: no calls for `cooldown` seconds. Then it lets exactly one probe through (half-open); the probe's
success closes it, its failure opens it for another cool-down. Written for one event loop: every method
is synchronous and never blocks, so there is nothing to lock (pybreaker does not support asyncio).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or cooldown <= 0:
            raise ValueError("the breaker needs a failure threshold ≥ 1 and a cool-down above 0")
        self._threshold = failure_threshold
        self._cooldown = cooldown
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self._cooldown:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def seconds_until_probe(self) -> float:
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def try_acquire(self) -> bool:
        """May a call go out now? In half-open state only the first caller gets the probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._move_to(BreakerState.HALF_OPEN)
            self._probe_in_flight = True
            return True
        return False

    def release_probe(self) -> None:
        """The call let through ended with no verdict (its caller was cancelled): the next caller may probe."""
        self._probe_in_flight = False

    def record_success(self) -> None:
        self._failures = 0
        self._probe_in_flight = False
        if self._state is not BreakerState.CLOSED:
            self._move_to(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._opened_at = self._clock()
            if self._state is not BreakerState.OPEN:
                self._move_to(BreakerState.OPEN)

    def _move_to(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        if self._on_change is not None and previous is not state:
            self._on_change(previous, state)
