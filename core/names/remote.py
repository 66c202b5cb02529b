"""The `remote` name backend: names fetched ahead from an LLM, served from a pool, local ones as fallback.

A request never waits for the model: background workers keep a bounded pool of fresh names filled (at
most `concurrency` calls in flight towards the server) and a request takes the oldest fresh one. When
requests outpace the model, names already served are served again (a bounded ring of the most recent
answers): a repeat costs nothing, a wait would cost every caller. Only before the first answer is there
nothing to take; then a request waits `wait` seconds at most for it, and takes a local name after that.
A circuit breaker stops the calls after repeated failures; while it is open requests get local names at
once and `/health` says the names are degraded.

With a fleet (`shared`, names in Redis: `core/names/shared.py`) the model's answers go to the shared pool
instead, under the fleet's leases, and one more worker keeps a small local buffer topped up from it. Requests
still only touch the local buffer (Redis is never on a request's path), and an instance whose own model is
down keeps serving model names as long as the fleet's pool has some. When Redis does not answer, the workers
fall back at once to the per-process pool above and go back to the shared one when it answers again; the
shared store's breaker logs those transitions, `/health` says which pool serves.

Reproducibility: a request with an explicit seed always gets the local name for that seed
(`nameSource: local`), since no LLM answer can be replayed; the rarity and the image follow the seed
either way.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from core.breaker import BreakerState, CircuitBreaker
from core.creature import NameOrigin
from core.errors import NameServerError
from core.eventlog import log
from core.health import ComponentHealth, HealthStatus
from core.names.base import GeneratedName
from core.names.local import LocalNames
from core.sharedstore import StoreUnavailable

if TYPE_CHECKING:
    from core.names.shared import Lease, SharedNamePool

# The shortest pause of a worker that found nothing to do; waits grow from here up to the pool's poll interval.
MIN_PAUSE: Final = 0.01
# The local buffer an instance keeps from the shared pool: enough to serve a burst without a round trip,
# small enough that the fleet's names stay in the pool where every instance can take them.
DEFAULT_BUFFER: Final = 8
# Names taken from the shared pool this recently still count as flowing (repeats allowed, health ok).
SHARED_FLOW_WINDOW: Final = 2.0


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
        shared: SharedNamePool | None = None,
        buffer: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetcher = fetcher
        self._breaker = breaker
        self._fallback = fallback or LocalNames()
        self._pool_size = pool_size
        self._concurrency = concurrency
        self._wait = wait
        self._shared = shared
        self._buffer = max(1, min(pool_size, buffer or DEFAULT_BUFFER))
        self._clock = clock
        self._ready: collections.deque[str] = collections.deque()  # fresh, never served
        self._served: collections.deque[str] = collections.deque(maxlen=pool_size)  # for repeats
        self._repeats = random.Random()
        self._in_flight = 0
        self._space = asyncio.Event()  # set when a name leaves the pool
        self._arrival = asyncio.Event()  # set when a name enters it
        self._drawn = asyncio.Event()  # for the shared-pool reader: a name left the pool
        self._pushed = asyncio.Event()  # for the shared-pool reader: this process added a name to the shared pool
        self._workers: list[asyncio.Task[None]] = []
        self._shared_live = True  # the last call to the shared pool was answered
        self._shared_seen_at = -SHARED_FLOW_WINDOW  # when the shared pool last had names for us
        self._held: set[Lease] = set()  # leases of calls in flight, handed back on close
        self._closing = False
        self.served_remote = 0
        self.served_repeats = 0
        self.served_local = 0
        self.fetches = 0  # model calls made by this process

    @property
    def pool_level(self) -> int:
        return len(self._ready)

    @property
    def sharing(self) -> bool:
        """Whether names come from (and go to) the fleet's shared pool right now."""
        return self._shared is not None and self._shared_live and self._shared.available

    async def start(self) -> None:
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._produce(), name=f"name-pool-{index}") for index in range(self._concurrency)
            ]
            if self._shared is not None:
                self._workers.append(asyncio.create_task(self._read_shared(self._shared), name="name-pool-shared"))

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
            self._drawn.set()
            name = self._ready.popleft()
            self._served.append(name)
            return name
        if self._served and self._names_flowing():
            self.served_repeats += 1
            return self._served[self._repeats.randrange(len(self._served))]
        return None

    def _names_flowing(self) -> bool:
        """Fresh model names keep coming: from this process's model, or from the fleet's pool."""
        return self._breaker.state is BreakerState.CLOSED or self._shared_flowing()

    def _shared_flowing(self) -> bool:
        return self.sharing and self._clock() - self._shared_seen_at < SHARED_FLOW_WINDOW

    def _worth_waiting(self) -> bool:
        # With the breaker open and no shared names coming, no name is coming: answer at once rather than
        # add latency.
        return self._in_flight > 0 or self._names_flowing()

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

    def _keep(self, name: str) -> None:
        self._ready.append(name)
        self._arrival.set()

    # --- Producers: model calls ---

    async def _produce(self) -> None:
        while not self._closing:
            shared = self._shared
            if shared is not None and shared.available:
                try:
                    await self._produce_shared(shared)
                    continue
                except StoreUnavailable:
                    self._shared_live = False
            await self._produce_local()

    async def _produce_local(self) -> None:
        """One step of the per-process pool: Redis absent or not answering."""
        if len(self._ready) + self._in_flight >= self._pool_size:
            self._space.clear()
            # With a shared pool configured, look again now and then: it may be answering again.
            await _wait_for(self._space, None if self._shared is None else self._shared.poll_interval)
            return
        if not self._breaker.try_acquire():
            await asyncio.sleep(max(self._breaker.seconds_until_probe(), 0.05))
            return
        name = await self._fetch()
        if name is not None:
            self._keep(name)

    async def _produce_shared(self, shared: SharedNamePool) -> None:
        """One step of refilling the fleet's pool: a lease, one model call, its name pushed for every instance."""
        probing = self._breaker.state is BreakerState.HALF_OPEN
        if not self._breaker.try_acquire():
            # This process's model is resting; the shared pool may still serve, the reader sees to that.
            await asyncio.sleep(max(self._breaker.seconds_until_probe(), 0.05))
            return
        try:
            lease = await shared.claim()
        except StoreUnavailable:
            if probing:
                self._breaker.release_probe()
            raise
        self._shared_live = True
        if lease is None:  # the pool is full enough, or the fleet's calls are all in flight
            if probing:
                self._breaker.release_probe()
            await asyncio.sleep(shared.poll_interval)
            return
        self._held.add(lease)
        try:
            await self._fill(shared, lease)
        except asyncio.CancelledError:
            raise  # still held: aclose hands it back
        except BaseException:
            self._held.discard(lease)  # Redis is away: the lease expires there by itself
            raise
        self._held.discard(lease)

    async def _fill(self, shared: SharedNamePool, lease: Lease) -> None:
        name = await self._fetch()
        if name is None:
            await shared.release(lease)
            return
        try:
            await shared.put(name, lease)
        except StoreUnavailable:
            self._keep(name)  # paid for: served from here rather than lost
            raise
        self._pushed.set()

    async def _fetch(self) -> str | None:
        """One model call under this process's breaker; None when it failed."""
        self._in_flight += 1
        self.fetches += 1
        try:
            name = await self._fetcher.fetch_name()
        except NameServerError:
            self._breaker.record_failure()
            return None
        except Exception as exc:  # a bug here must not stop the pool for good
            log.error("remote_name.failed", reason="unexpected", error=type(exc).__name__)
            self._breaker.record_failure()
            return None
        finally:
            self._in_flight -= 1
        self._breaker.record_success()
        return name

    # --- The shared pool's reader ---

    async def _read_shared(self, shared: SharedNamePool) -> None:
        """Keeps the local buffer topped up from the fleet's pool; doubles as the check that Redis answers."""
        pause = MIN_PAUSE
        while not self._closing:
            self._drawn.clear()
            self._pushed.clear()
            want = max(0, self._buffer - len(self._ready))
            try:
                if not shared.available:
                    raise StoreUnavailable("breaker open")
                names = await shared.take(want)
            except StoreUnavailable:
                self._shared_live = False
                await asyncio.sleep(shared.poll_interval)
                continue
            self._shared_live = True
            if names or shared.level > 0:
                self._shared_seen_at = self._clock()
            for name in names:
                self._keep(name)
            if names or (want and shared.level > 0):  # more to take (or junk to drain): at once
                pause = MIN_PAUSE
                continue
            if want:  # the pool is empty: look again soon, then less and less often
                await _wait_for(self._pushed, pause)
                pause = min(pause * 2, shared.poll_interval)
            else:  # the buffer is full: wait for a request to take from it
                await _wait_for(self._drawn, shared.poll_interval)
                pause = MIN_PAUSE

    def health(self) -> ComponentHealth:
        state = self._breaker.state
        if self._shared is None:
            if state is BreakerState.CLOSED:
                return ComponentHealth(self.backend, HealthStatus.OK, f"{len(self._ready)} names ready")
            return ComponentHealth(
                self.backend, HealthStatus.DEGRADED, f"name server breaker {state}: local names serve"
            )
        if not self.sharing:
            detail = "shared name pool (redis) unreachable: this process's own pool serves"
            if state is not BreakerState.CLOSED:
                detail += f"; name server breaker {state}: local names serve"
            return ComponentHealth(self.backend, HealthStatus.DEGRADED, detail)
        pool = f"shared pool (redis) {self._shared.level}/{self._shared.target}"
        if state is BreakerState.CLOSED:
            return ComponentHealth(self.backend, HealthStatus.OK, f"{len(self._ready)} names ready; {pool}")
        if self._ready or self._shared_flowing():
            return ComponentHealth(
                self.backend, HealthStatus.OK, f"name server breaker {state}: names come from the {pool}"
            )
        return ComponentHealth(
            self.backend,
            HealthStatus.DEGRADED,
            f"name server breaker {state} and the {pool} is empty: local names serve",
        )

    async def aclose(self) -> None:
        self._closing = True
        for event in (self._space, self._drawn, self._pushed):
            event.set()
        pending = set(self._workers)
        while pending:
            # Cancelled again until they end: Python 3.11's asyncio.wait_for (which redis-py uses) loses a
            # cancellation that lands as the awaited call completes, and the worker then carries on.
            for worker in pending:
                worker.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        await asyncio.gather(*self._workers, return_exceptions=True)  # all ended: collects their outcomes
        self._workers = []
        if self._shared is not None:
            # Calls cut short: hand their leases back rather than leave the fleet's slots taken until they expire.
            for lease in list(self._held):
                with contextlib.suppress(StoreUnavailable):
                    await self._shared.release(lease)
            self._held.clear()
        await self._fetcher.aclose()


async def _wait_for(event: asyncio.Event, seconds: float | None) -> None:
    """Until `event` is set, or `seconds` (None: no limit); the caller cleared it before looking."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
