"""Circuit breaker transitions on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.breaker import BreakerState, CircuitBreaker
from tests.support.clock import FakeClock


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read through a call: mypy would otherwise keep the state narrowed across the calls that change it."""
    return breaker.state


def make(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock(100.0)
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        failure_threshold=threshold,
        cooldown=cooldown,
        clock=clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    return breaker, clock, changes


def test_opens_after_consecutive_failures_only() -> None:
    breaker, _, changes = make()
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    for _ in range(2):
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.try_acquire()
    assert changes == [("closed", "open")]


def test_one_probe_after_the_cooldown_then_close_on_success() -> None:
    breaker, clock, changes = make()
    for _ in range(3):
        breaker.record_failure()
    clock.now += 9.999
    assert not breaker.try_acquire()
    assert breaker.seconds_until_probe() == pytest.approx(0.001)
    clock.now += 0.001
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.try_acquire()  # the probe
    assert not breaker.try_acquire()  # nobody else while it is out
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.try_acquire()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_probe_reopens_for_a_full_cooldown() -> None:
    breaker, clock, _ = make()
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.try_acquire()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 9.5
    assert not breaker.try_acquire()
    clock.now += 0.5
    assert breaker.try_acquire()


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, 0.0), (3, -1.0)])
def test_bad_configuration(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, cooldown=cooldown)


@given(st.lists(st.sampled_from(["ok", "fail", "tick"]), max_size=80), st.integers(min_value=1, max_value=5))
# Always run: a success between failures, a failed probe (counting on past the threshold), a successful one.
@example(
    ["fail", "fail", "ok", "fail", "fail", "fail", "tick", "tick", "tick", "fail", "tick", "tick", "tick", "ok"], 3
)
def test_any_sequence_follows_the_state_machine(events: list[str], threshold: int) -> None:
    breaker, clock, _ = make(threshold=threshold, cooldown=5.0)
    failures = 0  # failures since the last success: what `consecutive_failures` must report
    for event in events:
        if event == "tick":
            clock.now += 2.0
            continue
        state = state_of(breaker)
        allowed = breaker.try_acquire()
        if state is BreakerState.OPEN:
            assert not allowed
        if state is BreakerState.CLOSED:
            assert allowed
        if allowed:
            if event == "ok":
                breaker.record_success()
                failures = 0
                assert state_of(breaker) is BreakerState.CLOSED
            else:
                breaker.record_failure()
                failures += 1
                # A failed probe reopens at once; a closed breaker opens on the threshold-th failure in a row.
                opens = state is BreakerState.HALF_OPEN or failures >= threshold
                assert state_of(breaker) is (BreakerState.OPEN if opens else BreakerState.CLOSED)
        assert breaker.consecutive_failures == failures
