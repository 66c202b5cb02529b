"""The fleet's shared name pool, in process, against a real redis-server.

Each `RemoteNames` here has its own `SharedStore` (its own connections and breaker), as two service processes
would; the fetchers are stand-ins whose calls the test counts. The same behaviour through real server
processes and the fake OpenAI server is in test_fleet_names.py.
"""

from __future__ import annotations

import asyncio
import itertools
import string
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

import pytest

from core.breaker import CircuitBreaker
from core.creature import NameOrigin
from core.errors import NameServerError
from core.health import HealthStatus
from core.names.local import LocalNames
from core.names.remote import RemoteNames
from core.names.shared import CAP_FACTOR, Lease, SharedNamePool, clean_name
from core.sharedstore import SharedStore
from tests.support.redis_server import RedisServer
from tests.support.silent_server import SilentServer

POOL_KEY = "pokemon:names:pool"


@dataclass
class Calls:
    """Model calls in flight across every fetcher that shares it: the fleet-wide figure leases must bound."""

    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class Fetcher:
    """Names `<prefix><letters>`, or failures; optionally held until `gate` opens."""

    prefix: str = "Aqua"
    fail: bool = False
    gate: asyncio.Event | None = None
    calls: int = 0
    shared: Calls = field(default_factory=Calls)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count())

    async def fetch_name(self) -> str:
        self.calls += 1
        self.shared.in_flight += 1
        self.shared.max_in_flight = max(self.shared.max_in_flight, self.shared.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0.001)
            if self.fail:
                raise NameServerError("connect")
            return self.prefix + letters(next(self._numbers))
        finally:
            self.shared.in_flight -= 1

    async def aclose(self) -> None:
        return None


def letters(number: int) -> str:
    """0 -> "aaa", 1 -> "aab"...: a valid name suffix for every number."""
    word = ""
    for _ in range(3):
        number, digit = divmod(number, 26)
        word = string.ascii_lowercase[digit] + word
    return word


def store_on(server: RedisServer, **options: float) -> SharedStore:
    return SharedStore.from_url(
        server.url,
        timeout=options.get("timeout", 0.2),
        breaker_failures=int(options.get("breaker_failures", 2)),
        breaker_cooldown=options.get("breaker_cooldown", 0.2),
    )


def pool_on(store: SharedStore, **options: float) -> SharedNamePool:
    return SharedNamePool(
        store,
        target=int(options.get("target", 6)),
        ttl=int(options.get("ttl", 60)),
        lease_slots=int(options.get("lease_slots", 2)),
        lease_seconds=options.get("lease_seconds", 5.0),
        poll_interval=options.get("poll_interval", 0.02),
    )


# Every source a scenario builds, so that `run` closes them even when a check fails midway.
OPEN: list[RemoteNames] = []


def run(scenario: Callable[[], Coroutine[None, None, None]]) -> None:
    async def guarded() -> None:
        try:
            await scenario()
        finally:
            while OPEN:
                await OPEN.pop().aclose()

    asyncio.run(guarded())


def names_with(fetcher: Fetcher, pool: SharedNamePool | None, **options: float) -> RemoteNames:
    names = RemoteNames(
        fetcher,
        breaker=CircuitBreaker(failure_threshold=2, cooldown=60.0),
        pool_size=int(options.get("pool_size", 8)),
        concurrency=int(options.get("concurrency", 2)),
        wait=options.get("wait", 0.0),
        shared=pool,
        buffer=int(options.get("buffer", 2)),
    )
    OPEN.append(names)
    return names


async def until(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def served(names: RemoteNames, count: int) -> list[tuple[str, NameOrigin]]:
    answers = []
    for seed in range(count):
        name = await names.name_for(seed)
        answers.append((name.value, name.origin))
        await asyncio.sleep(0.005)
    return answers


def test_an_instance_whose_model_is_down_serves_the_names_another_fetched(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        down_fetcher = Fetcher("Down", fail=True)
        down_pool = pool_on(store_on(redis_server))
        down = names_with(down_fetcher, down_pool)
        await down.start()
        await until(lambda: down.health().status is HealthStatus.DEGRADED)  # its model failed twice
        alone = await down.name_for(7)
        working = names_with(Fetcher("Aqua"), pool_on(store_on(redis_server)))
        await working.start()
        await until(lambda: down.pool_level > 0)
        answers = await served(down, 20)
        health = down.health()
        seeded = await down.name_for(42, reproducible=True)
        await working.aclose()
        await down.aclose()
        await down_pool.store.aclose()

        assert alone.origin is NameOrigin.LOCAL  # nothing in the shared pool yet, no model of its own
        assert {origin for _, origin in answers} == {NameOrigin.REMOTE}
        assert all(name.startswith("Aqua") for name, _ in answers), answers
        assert down_fetcher.calls == 2  # its own breaker opened after two failures, and stays this process's own
        assert health.status is HealthStatus.OK, health
        assert health.detail is not None and "breaker open" in health.detail and "shared pool" in health.detail
        assert seeded == LocalNames().name_now(42)  # a chosen seed keeps its reproducible local name

    run(scenario)


def test_leases_bound_the_model_calls_in_flight_across_the_fleet(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        calls = Calls()
        gate = asyncio.Event()
        fetchers = [Fetcher(prefix, gate=gate, shared=calls) for prefix in ("Aqua", "Volt", "Moss")]
        fleet = [names_with(fetcher, pool_on(store_on(redis_server), target=30), concurrency=4) for fetcher in fetchers]
        for names in fleet:
            await names.start()
        await until(lambda: calls.in_flight == 2)
        await asyncio.sleep(0.2)  # ten poll intervals: twelve workers keep asking for a lease
        held = calls.in_flight
        leases = redis_server.client().keys("pokemon:names:lease:*")
        gate.set()
        await until(lambda: redis_server.client().llen(POOL_KEY) >= 20)
        for names in fleet:
            await names.aclose()

        assert held == 2
        assert sorted(leases) == [b"pokemon:names:lease:0", b"pokemon:names:lease:1"]
        assert calls.max_in_flight == 2

    run(scenario)


def test_a_pool_at_its_target_costs_no_model_call(redis_server: RedisServer) -> None:
    redis = redis_server.client()
    redis.rpush(POOL_KEY, *[f"Stock{letters(number)}" for number in range(6)])

    async def scenario() -> None:
        fetcher = Fetcher()
        names = names_with(fetcher, pool_on(store_on(redis_server), target=4), buffer=2)
        await names.start()
        await until(lambda: names.pool_level == 2)  # the local buffer took two, four remain: the target
        await asyncio.sleep(0.3)  # fifteen poll intervals
        idle_calls = fetcher.calls
        first = await names.name_for(1)
        await until(lambda: fetcher.calls == 1 and redis.llen(POOL_KEY) == 4)
        await asyncio.sleep(0.1)
        await names.aclose()

        assert idle_calls == 0
        assert first.value == "Stockaaa" and first.origin is NameOrigin.REMOTE
        assert fetcher.calls == 1  # one name taken, one model call to put the pool back at its target
        assert redis.lrange(POOL_KEY, -1, -1) == [b"Aquaaaa"]  # pushed for every instance

    run(scenario)


POISON: list[bytes | str] = [
    b"A" * 10_000,
    "Bad\x00name",
    "Evil\x1b[31mname",
    "<script>alert(1)</script>",
    b"\xff\xfe\xfaname",
    "Two words",
    "lowercase",  # sanitising would change it: not something this service stored
    "Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "",
    "Ab",
    "Pok\u00e9mon",
]
GOOD = ["Mossquill", "Khra'gzat", "Voltaran"]


@pytest.mark.parametrize("entry", POISON)
def test_clean_name_refuses_what_this_service_never_stores(entry: bytes | str) -> None:
    assert clean_name(entry) is None


@pytest.mark.parametrize("entry", [*GOOD, "Élodran".encode()])
def test_clean_name_takes_stored_names(entry: bytes | str) -> None:
    assert clean_name(entry) == (entry.decode() if isinstance(entry, bytes) else entry)


def test_tampered_entries_in_redis_are_never_served(redis_server: RedisServer) -> None:
    redis = redis_server.client()
    entries = [item for pair in itertools.zip_longest(POISON, GOOD) for item in pair if item is not None]
    redis.rpush(POOL_KEY, *entries)

    async def scenario() -> None:
        pool = pool_on(store_on(redis_server))
        names = names_with(Fetcher(fail=True), pool)
        await names.start()
        answers: list[tuple[str, NameOrigin]] = []
        while redis.llen(POOL_KEY) or names.pool_level:  # the reader keeps two at hand: serve to drain it
            assert len(answers) < 200, "the pool was not drained"
            answers += await served(names, 1)
        answers += await served(names, 10)
        await names.aclose()

        remote = {name for name, origin in answers if origin is NameOrigin.REMOTE}
        local = {name for name, origin in answers if origin is NameOrigin.LOCAL}
        assert remote == set(GOOD)
        assert not local & {str(entry) for entry in POISON}
        assert pool.rejected == len(POISON)
        assert pool.taken == len(GOOD)

    run(scenario)


def test_the_pool_key_has_a_ttl_and_a_cap(redis_server: RedisServer) -> None:
    redis = redis_server.client()

    async def scenario() -> None:
        pool = pool_on(store_on(redis_server), target=5, ttl=120)
        names = names_with(Fetcher(), pool, buffer=1)
        await names.start()
        await until(lambda: redis.llen(POOL_KEY) == 5)
        await asyncio.sleep(0.1)
        level, ttl = redis.llen(POOL_KEY), redis.ttl(POOL_KEY)
        await names.aclose()

        # Another writer overfilled the list: the next push trims it to the cap, the oldest names first.
        redis.rpush(POOL_KEY, *[f"Extra{letters(number)}" for number in range(40)])
        await pool.put("Lastname", Lease("pokemon:names:lease:0", "not-held"))
        await pool.store.aclose()

        assert level == 5  # the target, not one more: a held lease counts as a name on its way
        assert 110 < ttl <= 120
        assert redis.llen(POOL_KEY) == CAP_FACTOR * 5
        assert redis.lrange(POOL_KEY, -1, -1) == [b"Lastname"]
        assert redis.lrange(POOL_KEY, 0, 0) == [f"Extra{letters(21)}".encode()]

    run(scenario)


def test_only_its_holder_hands_a_lease_back(redis_server: RedisServer) -> None:
    redis = redis_server.client()

    async def scenario() -> None:
        pool = pool_on(store_on(redis_server), lease_slots=1, lease_seconds=30.0)
        lease = await pool.claim()
        assert lease is not None
        assert await pool.claim() is None  # the only slot is held
        assert 0 < redis.pttl(lease.key) <= 30_000
        redis.set(lease.key, "someone-else")  # it expired and another instance took it
        await pool.release(lease)
        assert redis.get(lease.key) == b"someone-else"
        redis.delete(lease.key)
        assert await pool.claim() is not None
        await pool.store.aclose()

    run(scenario)


def test_closing_hands_back_the_leases_of_calls_cut_short(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        fetcher = Fetcher(gate=asyncio.Event())
        pool = pool_on(store_on(redis_server))
        names = names_with(fetcher, pool)
        await names.start()
        await until(lambda: fetcher.shared.in_flight == 2)
        assert len(redis_server.client().keys("pokemon:names:lease:*")) == 2
        await names.aclose()
        assert redis_server.client().keys("pokemon:names:lease:*") == []
        await pool.store.aclose()

    run(scenario)


def test_redis_going_away_falls_back_to_the_own_pool_and_back(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        fetcher = Fetcher()
        pool = pool_on(store_on(redis_server))
        names = names_with(fetcher, pool)
        await names.start()
        await until(lambda: names.sharing and pool.pushed > 0)

        redis_server.kill()
        slowest = 0.0
        answers = []
        for seed in range(60):
            began = time.perf_counter()
            answers.append((await names.name_for(seed)).origin)
            slowest = max(slowest, time.perf_counter() - began)
            await asyncio.sleep(0.005)
        await until(lambda: names.health().status is HealthStatus.DEGRADED)
        down = names.health()
        fetched_while_down = fetcher.calls

        redis_server.start()
        await until(lambda: names.health().status is HealthStatus.OK)
        pushed = pool.pushed
        await until(lambda: pool.pushed > pushed)  # the model's names go to the shared pool again
        await names.aclose()
        await pool.store.aclose()

        assert set(answers) == {NameOrigin.REMOTE}  # the process's own pool served, from its own model
        assert slowest < 0.05  # a request never waits on Redis
        assert fetched_while_down > 0
        assert down.detail is not None and "redis" in down.detail and "own pool" in down.detail

    run(scenario)


def test_a_hung_redis_costs_requests_nothing() -> None:
    with SilentServer() as silent:
        store = SharedStore.from_url(
            silent.url.replace("http://", "redis://") + "/0", timeout=0.1, breaker_failures=2, breaker_cooldown=60.0
        )

        async def scenario() -> None:
            fetcher = Fetcher()
            names = names_with(fetcher, pool_on(store))
            await names.start()
            await until(lambda: names.health().status is HealthStatus.DEGRADED and names.pool_level > 0)
            answers, slowest = [], 0.0
            for seed in range(20):
                began = time.perf_counter()
                name = await names.name_for(seed)
                slowest = max(slowest, time.perf_counter() - began)
                answers.append((name.value, name.origin))
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.3)
            report = names.health()
            await names.aclose()

            assert {origin for _, origin in answers} == {NameOrigin.REMOTE}  # from its own model, via its own pool
            assert slowest < 0.05  # none of the twenty waited out the 0.1 s Redis timeout
            assert report.detail is not None and "redis" in report.detail
            assert not store.available  # the breaker opened: no call goes to the hung server any more
            assert fetcher.calls > 0

        run(scenario)


def test_a_pool_key_of_another_type_is_replaced_without_taking_redis_away(redis_server: RedisServer) -> None:
    redis = redis_server.client()
    redis.set(POOL_KEY, "someone else's string")

    async def scenario() -> None:
        store = store_on(redis_server)
        pool = pool_on(store, target=4)
        names = names_with(Fetcher(), pool, buffer=1)
        await names.start()
        # The string was replaced by the fleet's list, and this instance's buffer holds a name from it.
        await until(lambda: redis.type(POOL_KEY) == b"list" and names.pool_level >= 1)
        answers = await served(names, 5)
        # Redis answered every call, if with an error at first: the store stays up for every other user.
        assert store.health().status is HealthStatus.OK
        assert store.failed_calls == 0
        assert {origin for _, origin in answers} == {NameOrigin.REMOTE}
        await names.aclose()

    run(scenario)
