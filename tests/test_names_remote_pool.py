"""The remote-name pool: fetched ahead, bounded, concurrency-limited, local names when it cannot help.

The fetcher here is a stand-in whose every call the test controls; the HTTP side is covered against a
real server process in test_names_remote.py.
"""

from __future__ import annotations

import asyncio
import itertools

from core.breaker import BreakerState, CircuitBreaker
from core.creature import NameOrigin
from core.errors import NameServerError
from core.health import HealthStatus
from core.names.local import LocalNames
from core.names.remote import RemoteNames


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read through a call: mypy would otherwise keep the state narrowed across the calls that change it."""
    return breaker.state


class ScriptedFetcher:
    """Answers names from a counter, or fails, or blocks until released; records concurrency."""

    def __init__(self) -> None:
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False
        self._numbers = itertools.count(1)

    async def fetch_name(self) -> str:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            if self.fail:
                raise NameServerError("status_500")
            return f"Remote{chr(ord('a') + next(self._numbers) % 26)}name"
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def make(fetcher: ScriptedFetcher, **options: float) -> RemoteNames:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=60.0)
    return RemoteNames(
        fetcher,
        breaker=breaker,
        pool_size=int(options.get("pool_size", 4)),
        concurrency=int(options.get("concurrency", 2)),
        wait=options.get("wait", 0.0),
    )


def test_the_pool_fills_ahead_and_serves_remote_names() -> None:
    async def scenario() -> None:
        fetcher = ScriptedFetcher()
        names = make(fetcher)
        await names.start()
        await settle()
        assert names.pool_level == 4  # filled up to the bound, no further
        served = [await names.name_for(seed) for seed in range(3)]
        assert {name.origin for name in served} == {NameOrigin.REMOTE}
        await settle()
        assert names.pool_level == 4  # topped up again
        assert fetcher.calls == 7
        await names.aclose()
        assert fetcher.closed

    asyncio.run(scenario())


def test_a_chosen_seed_gets_the_reproducible_local_name() -> None:
    async def scenario() -> None:
        names = make(ScriptedFetcher())
        await names.start()
        await settle()
        name = await names.name_for(42, reproducible=True)
        assert name == LocalNames().name_now(42)
        assert name.origin is NameOrigin.LOCAL
        await names.aclose()

    asyncio.run(scenario())


def test_concurrency_towards_the_server_is_bounded() -> None:
    async def scenario() -> None:
        fetcher = ScriptedFetcher()
        fetcher.gate = asyncio.Event()
        names = make(fetcher, pool_size=50, concurrency=3)
        await names.start()
        await settle()
        assert fetcher.in_flight == 3
        fetcher.gate.set()
        await settle()
        assert fetcher.max_in_flight == 3
        await names.aclose()

    asyncio.run(scenario())


def test_an_empty_pool_waits_a_short_bound_then_falls_back() -> None:
    async def scenario() -> None:
        fetcher = ScriptedFetcher()
        fetcher.gate = asyncio.Event()  # the server never answers in time
        names = make(fetcher, wait=0.02)
        await names.start()
        loop = asyncio.get_running_loop()
        began = loop.time()
        name = await names.name_for(7)
        waited = loop.time() - began
        assert name.origin is NameOrigin.LOCAL
        assert 0.015 <= waited < 0.5
        fetcher.gate.set()
        await names.aclose()

    asyncio.run(scenario())


def test_a_waiting_request_takes_a_name_that_arrives_in_time() -> None:
    async def scenario() -> None:
        fetcher = ScriptedFetcher()
        fetcher.gate = asyncio.Event()
        names = make(fetcher, wait=5.0)
        await names.start()
        asyncio.get_running_loop().call_later(0.01, fetcher.gate.set)
        name = await names.name_for(7)
        assert name.origin is NameOrigin.REMOTE
        await names.aclose()

    asyncio.run(scenario())


def test_failures_open_the_breaker_and_local_names_come_without_delay() -> None:
    async def scenario() -> None:
        fetcher = ScriptedFetcher()
        fetcher.fail = True
        names = make(fetcher, wait=5.0, concurrency=1)
        await names.start()
        await settle()
        assert fetcher.calls == 3  # the threshold, then no more calls during the cool-down
        health = names.health()
        assert health.status is HealthStatus.DEGRADED and "open" in (health.detail or "")
        loop = asyncio.get_running_loop()
        began = loop.time()
        name = await names.name_for(11)
        assert name.origin is NameOrigin.LOCAL
        assert loop.time() - began < 0.05  # no wait while the breaker is open
        await names.aclose()

    asyncio.run(scenario())


def test_after_the_cooldown_one_probe_closes_the_breaker() -> None:
    async def scenario() -> None:
        now = [0.0]
        fetcher = ScriptedFetcher()
        fetcher.fail = True
        breaker = CircuitBreaker(failure_threshold=2, cooldown=0.05, clock=lambda: now[0])
        names = RemoteNames(fetcher, breaker=breaker, pool_size=2, concurrency=2, wait=0.0)
        await names.start()
        await settle()
        assert state_of(breaker) is BreakerState.OPEN
        calls = fetcher.calls
        fetcher.fail = False
        now[0] += 1.0  # past the cool-down
        await asyncio.sleep(0.2)  # the workers' own back-off before they look again
        assert state_of(breaker) is BreakerState.CLOSED
        assert fetcher.calls > calls
        assert names.pool_level == 2
        await names.aclose()

    asyncio.run(scenario())


def test_when_requests_outpace_the_model_recent_names_are_served_again() -> None:
    async def scenario() -> None:
        fetcher = ScriptedFetcher()
        names = make(fetcher, pool_size=3, concurrency=1, wait=5.0)
        await names.start()
        await settle()
        fetcher.gate = asyncio.Event()  # from now on the model is slow
        first = [await names.name_for(seed) for seed in range(3)]
        loop = asyncio.get_running_loop()
        began = loop.time()
        repeats = [await names.name_for(seed) for seed in range(20)]
        assert loop.time() - began < 0.05  # no waiting: a repeat is ready at once
        assert {name.origin for name in repeats} == {NameOrigin.REMOTE}
        assert {name.value for name in repeats} <= {name.value for name in first}
        assert names.served_repeats == 20
        fetcher.gate.set()
        await names.aclose()

    asyncio.run(scenario())
