"""The `remote` name backend: names fetched ahead from an LLM, served from a pool, local ones as fallback.

A request never waits for the model: background workers keep a bounded pool of fresh names filled (at
most `concurrency` calls in flight towards the server) and a request takes the oldest fresh one. When
requests outpace the model, names already served are served again (a bounded ring of the most recent
answers): a repeat costs nothing, a wait would cost every caller. Only before the first answer is there
nothing to take; then a request waits `wait` seconds at most for it, and takes a local name after that.
A circuit breaker stops the calls after repeated failures; while it is open requests get local names at
once and `/health` says the names are degraded.

Reproducibility: a request with an explicit seed always gets the local name for that seed
(`nameSource: local`), since no LLM answer can be replayed; the rarity and the image follow the seed
either way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from typing import Protocol

from core.breaker import BreakerState, CircuitBreaker
from core.creature import NameOrigin
from core.errors import NameServerError
from core.eventlog import log
from core.health import ComponentHealth, HealthStatus
from core.names.base import GeneratedName
from core.names.local import LocalNames


class NameFetcher(Protocol):
    async def fetch_name(self) -> str: ...

    async def aclose(self) -> None: ...


class RemoteNames:
    backend = "remote"

    def __init__(
        self,
        fetcher: NameFetcher,
        *,
        breaker: CircuitBreaker,
        fallback: LocalNames | None = None,
        pool_size: int = 32,
        concurrency: int = 2,
        wait: float = 0.05,
    ) -> None:
        self._fetcher = fetcher
        self._breaker = breaker
        self._fallback = fallback or LocalNames()
        self._pool_size = pool_size
        self._concurrency = concurrency
        self._wait = wait
        self._ready: collections.deque[str] = collections.deque()  # fresh, never served
        self._served: collections.deque[str] = collections.deque(maxlen=pool_size)  # for repeats
        self._repeats = random.Random()
        self._in_flight = 0
        self._space = asyncio.Event()  # set when a name leaves the pool
        self._arrival = asyncio.Event()  # set when a name enters it
        self._workers: list[asyncio.Task[None]] = []
        self.served_remote = 0
        self.served_repeats = 0
        self.served_local = 0

    @property
    def pool_level(self) -> int:
        return len(self._ready)

    async def start(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._work(), name=f"name-pool-{index}") for index in range(self._concurrency)
            ]

    async def name_for(self, seed: int, *, reproducible: bool = False) -> GeneratedName:
        if not reproducible:
            name = self._take()
            if name is None and self._wait > 0 and self._worth_waiting():
                name = await self._take_within(self._wait)
            if name is not None:
                self.served_remote += 1
                return GeneratedName(name, NameOrigin.REMOTE)
        self.served_local += 1
        return self._fallback.name_now(seed)

    def _take(self) -> str | None:
        if self._ready:
            self._space.set()
            name = self._ready.popleft()
            self._served.append(name)
            return name
        if self._served and self._breaker.state is BreakerState.CLOSED:
            self.served_repeats += 1
            return self._served[self._repeats.randrange(len(self._served))]
        return None

    def _worth_waiting(self) -> bool:
        # With the breaker open no name is coming: answer at once rather than add latency.
        return self._breaker.state is BreakerState.CLOSED or self._in_flight > 0

    async def _take_within(self, seconds: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrival.wait()
            name = self._take()
            if name is not None:
                return name

    async def _work(self) -> None:
        while True:
            if len(self._ready) + self._in_flight >= self._pool_size:
                self._space.clear()
                await self._space.wait()
                continue
            if not self._breaker.try_acquire():
                await asyncio.sleep(max(self._breaker.seconds_until_probe(), 0.05))
                continue
            self._in_flight += 1
            try:
                name = await self._fetcher.fetch_name()
            except NameServerError:
                self._breaker.record_failure()
                continue
            except Exception as exc:  # a bug here must not stop the pool for good
                log.error("remote_name.failed", reason="unexpected", error=type(exc).__name__)
                self._breaker.record_failure()
                continue
            finally:
                self._in_flight -= 1
            self._breaker.record_success()
            self._ready.append(name)
            self._arrival.set()

    def health(self) -> ComponentHealth:
        state = self._breaker.state
        if state is BreakerState.CLOSED:
            return ComponentHealth(self.backend, HealthStatus.OK, f"{len(self._ready)} names ready")
        return ComponentHealth(self.backend, HealthStatus.DEGRADED, f"name server breaker {state}: local names serve")

    async def aclose(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        await self._fetcher.aclose()
