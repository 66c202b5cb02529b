"""A clock the test moves by hand, for code that takes `clock: Callable[[], float]`: time without sleeps."""

from __future__ import annotations


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


EPOCH = 1_700_000_000.0  # an epoch-like start: exact in binary, with quarter seconds still exact above it
