"""Token buckets in a DynamoDB table, shared by every instance (Lambda environments, containers).

The arithmetic is `TokenBucket.take`, as in `MemoryRateLimiter`; only where the state lives differs.

Table: partition key `pk` (string); TTL enabled on `expires_at`. One item per key:

    pk          the client key
    tokens      tokens left at `updated_at` (a float, stored exactly: shortest repr, read back bit for bit)
    updated_at  epoch seconds of the last admission
    version     incremented by every write: the compare-and-set guard
    expires_at  epoch seconds when the bucket is full again, plus a margin (DynamoDB TTL removes idle keys;
                a full bucket and no item mean the same, so that deletion is exact, whenever it happens)

Why compare-and-set on a version, with the last state seen kept in memory:

* DynamoDB update expressions cannot compute a refill (no min/max, no clock), so the new state is computed
  here and written with a condition that the item is still the one it was computed from. Any write that
  lost a race fails its condition and is retried from the state that won: no admission is ever granted
  from a stale state, so the shared limit is exact under any concurrency.
* The guard is a version counter, not `updated_at`: two instances can read the same clock value (or a
  coarse one), and a guard on the timestamp would then let both writes through.
* No read in the common case. Each limiter remembers the state and version it last wrote or saw per key;
  the next take is computed from that and written with `version = :seen`. If another instance wrote in
  between, the failed write returns the current item (`ReturnValuesOnConditionCheckFailure=ALL_OLD`) and
  the take is recomputed from it: one write when this instance saw the key last, two when it did not,
  never a separate GetItem (except when the failure comes back without the item: TTL removed it, or a
  store that does not return it). A key never seen: a conditional put `attribute_not_exists(pk)`.
* A refusal writes nothing: it takes no token, and the state it would write is the same bucket. Refusing
  from a remembered state is safe even when that state is stale, because other instances can only have
  taken tokens since: the true level is never above the remembered one. So a flood from one client costs
  writes only for what is admitted, plus one failed write per instance that has not yet seen the empty
  bucket, which also keeps a hot key far below DynamoDB's per-partition write limit.
* Within one process, concurrent takes for the same key are coalesced, and no lock is ever held across a
  store call: while one call for a key is out, later takes for it queue (an in-memory list, appended on
  the event loop) and go out together as one call, which applies `TokenBucket.take` once per queued take
  to the same state and writes the result once. So a burst from one client costs two writes, not one per
  request, and only other instances cause lost races. A take waits for at most the call in flight plus
  its own; and when the call in flight fails, the takes queued behind it are answered as failed at once
  rather than sent to the same failing store one batch after another.
* `updated_at` never moves backwards: a take is computed at `max(now, updated_at)`, so an instance whose
  clock lags cannot refill the same interval twice.

The clock must be epoch seconds (the default `time.time`): it is shared by instances and feeds the TTL.

When the store fails (network, throttling, any error): fail open by default (admitted with what this
instance would decide from what it last saw, logged `rate_limit.store_failed`, counted in
`store_failures`), or fail closed (refused, Retry-After of a few seconds). After `max_retries` lost races
in a row the request is refused with a short Retry-After and counted in `contended`: admitting it would
break the limit exactly when one key is hammered concurrently. `acquire` never raises.

A failing store fails fast. One call is bounded by the client's timeouts with a single attempt (a hung
endpoint costs one read timeout, about a second, not attempts × timeout plus back-off), and a circuit
breaker (`core/breaker.py`) counts failed calls: after `breaker_failures` in a row it opens, and for
`breaker_cooldown` seconds no call goes out; takes are answered at once by the fail-open or fail-closed
rule, with no log line each (one `rate_limit.breaker` line per transition). Then one probe goes out, and
its answer closes the breaker or opens it again. The breaker is written for one event loop, so only
`acquire` (on the loop, around the worker-thread call) touches it; `acquire_blocking` bypasses it.
`health()` reports the store degraded while the breaker is not closed or the last call failed.

boto3 is imported when a limiter is built, never when this module is imported; its own configuration
(region, credentials, `AWS_ENDPOINT_URL_DYNAMODB`) applies. Calls are blocking, so they run on a small
dedicated thread pool, sized like botocore's connection pool, rather than on the event loop.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Final, NamedTuple

from core.breaker import BreakerState, CircuitBreaker
from core.eventlog import log
from core.health import ComponentHealth, HealthStatus
from core.ratelimit.bucket import BucketState, RateDecision, TokenBucket

# boto3 ships no type information here: the low-level client is `Any`, in this one place.
DynamoDBClient = Any
AttributeMap = dict[str, dict[str, str]]

FAIL_CLOSED_RETRY_AFTER: Final = 5.0  # seconds: long enough not to hammer a failing store
CONTENDED_RETRY_AFTER: Final = 1.0
TTL_MARGIN_SECONDS: Final = 60  # TTL deletion is lazy anyway; the margin only keeps clock skew harmless
CONNECT_TIMEOUT: Final = 0.5
READ_TIMEOUT: Final = 1.0  # a rate-limit check must not hold a request longer than the work it guards
# One attempt in all. botocore's `max_attempts` counts retries after the first (2 meant three attempts: a
# hung store cost 3 s a call); `total_max_attempts` counts every one. A retry would only wait out the same
# timeout again: a failed call is answered by the fail-open rule and counted by the breaker instead.
TOTAL_ATTEMPTS: Final = 1
DEFAULT_BREAKER_FAILURES: Final = 3
DEFAULT_BREAKER_COOLDOWN: Final = 5.0  # seconds without calls once the breaker opens
BACKEND: Final = "dynamodb"
WORKERS: Final = 16
DEFAULT_CACHED_KEYS: Final = 10_000

_NEW_KEY_CONDITION: Final = "attribute_not_exists(pk)"
_SAME_VERSION_CONDITION: Final = "#version = :seen"


class _Seen(NamedTuple):
    """A bucket state as stored (or equivalent to it) and the version of the item holding it."""

    state: BucketState
    version: int


class _LastSeen:
    """The last `_Seen` per key, least recently used dropped first; shared by the worker threads."""

    def __init__(self, max_keys: int) -> None:
        self._max_keys = max_keys
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> _Seen | None:
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                self._seen.move_to_end(key)
            return seen

    def put(self, key: str, seen: _Seen | None) -> None:
        # Last writer wins: a stale entry costs one failed conditional write later, never a wrong admission.
        with self._lock:
            if seen is None:
                self._seen.pop(key, None)
                return
            self._seen[key] = seen
            self._seen.move_to_end(key)
            if len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)


class _Write(NamedTuple):
    won: bool
    seen: _Seen | None  # what the item holds now: ours when won, the winner's (or None: no item) when lost


class _Outcome(NamedTuple):
    decisions: list[RateDecision]  # one per take, in order
    failed: bool  # the store did not answer: the decisions are the failure rule's


class DynamoDBRateLimiter:
    """A `RateLimiter` whose buckets live in a DynamoDB table; see the module docstring."""

    def __init__(
        self,
        table: str,
        bucket: TokenBucket,
        *,
        fail_open: bool = True,
        clock: Callable[[], float] = time.time,
        client: Any | None = None,
        max_retries: int = 5,
        max_cached_keys: int = DEFAULT_CACHED_KEYS,
        breaker_failures: int = DEFAULT_BREAKER_FAILURES,
        breaker_cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        breaker_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if bucket.capacity < 1 or bucket.refill_per_second <= 0:
            raise ValueError("a bucket needs a capacity ≥ 1 and a refill rate above 0")
        if not table:
            raise ValueError("a table name is required")
        if max_retries < 0 or max_cached_keys < 1:
            raise ValueError("max_retries must be ≥ 0 and max_cached_keys ≥ 1")
        self.table = table
        self.fail_open = fail_open
        self.store_failures = 0
        self.contended = 0
        self._bucket = bucket
        self._clock = clock
        self._max_retries = max_retries
        self._breaker = CircuitBreaker(
            failure_threshold=breaker_failures,
            cooldown=breaker_cooldown,
            clock=breaker_clock,
            on_change=self._log_breaker,
        )
        self._owns_client = client is None
        self._client: DynamoDBClient = client if client is not None else _default_client()
        self._last_seen = _LastSeen(max_cached_keys)
        # Keys with a call out, and the takes waiting for the next one (event loop thread only).
        self._queued: dict[str, list[asyncio.Future[RateDecision]]] = {}
        self._drivers: set[asyncio.Task[None]] = set()
        self._counter_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ratelimit-dynamodb")

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    async def acquire(self, key: str) -> RateDecision:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RateDecision] = loop.create_future()
        queued = self._queued.get(key)
        if queued is not None:
            queued.append(future)
        else:
            self._queued[key] = [future]
            # A task of its own, so a caller that goes away (a client disconnect) cancels only its own future:
            # a take not yet sent is then dropped, and the others' call goes on.
            driver = loop.create_task(self._drive(key))
            self._drivers.add(driver)
            driver.add_done_callback(self._drivers.discard)
        return await future

    def acquire_blocking(self, key: str) -> RateDecision:
        """One take from a worker thread: blocks for up to the client's timeouts, bypasses the breaker and
        the coalescing, so concurrent callers for one key race through DynamoDB (still exact, at the cost of
        retries)."""
        return self._take_blocking(key, 1).decisions[0]

    def health(self) -> ComponentHealth:
        state = self._breaker.state
        if state is BreakerState.CLOSED and self._breaker.consecutive_failures == 0:
            return ComponentHealth(BACKEND)
        rule = "admitted" if self.fail_open else "refused"
        detail = f"store breaker {state} after failed calls: requests are {rule} without the shared count"
        return ComponentHealth(BACKEND, HealthStatus.DEGRADED, detail)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

    # Coalescing and the breaker (event loop thread only) ----------------------------------------------

    async def _drive(self, key: str) -> None:
        """Send the takes queued for `key`, one call per batch, until none are left."""
        batch: list[asyncio.Future[RateDecision]] = []
        try:
            while batch := [future for future in self._queued[key] if not future.done()]:
                self._queued[key] = []
                outcome = await self._take(key, len(batch))
                if outcome.failed:
                    # The takes that queued behind a failed call would wait for the same store: answer now.
                    late = [future for future in self._queued[key] if not future.done()]
                    self._queued[key] = []
                    batch += late
                    outcome = _Outcome(outcome.decisions + self._fallback(self._estimates(key, len(late))), True)
                _answer(batch, outcome.decisions)
        except Exception as exc:  # a bug, never a store failure (those are outcomes): still answer everyone
            waiting = batch + self._queued.get(key, [])
            _answer(waiting, self._store_failed(exc, self._estimates(key, len(waiting))))
        finally:
            self._queued.pop(key, None)

    async def _take(self, key: str, takes: int) -> _Outcome:
        if not self._breaker.try_acquire():
            # Skipped, not failed: no call, no count, no log line (the transition was logged once).
            retry_after = max(1.0, self._breaker.seconds_until_probe())
            return _Outcome(self._fallback(self._estimates(key, takes), retry_after), True)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(self._executor, self._take_blocking, key, takes)
        except Exception as exc:  # outside a store call (a shut-down executor): a failure like the others
            outcome = _Outcome(self._store_failed(exc, self._estimates(key, takes)), True)
        if outcome.failed:
            self._breaker.record_failure()
        else:
            self._breaker.record_success()
        return outcome

    def _log_breaker(self, previous: BreakerState, current: BreakerState) -> None:
        log.warning("rate_limit.breaker", previous=previous, state=current, table=self.table)

    # The takes (worker threads) -----------------------------------------------------------------------

    def _take_blocking(self, key: str, takes: int) -> _Outcome:
        seen = self._last_seen.get(key)
        for _ in range(self._max_retries + 1):
            now = self._clock() if seen is None else max(self._clock(), seen.state.updated_at)
            state, decisions = self._take_many(seen.state if seen is not None else None, now, takes)
            if not any(decision.allowed for decision in decisions) and seen is not None:
                # Nothing to write; remembering the refilled state keeps later takes identical to the
                # in-memory limiter's, and it is the same bucket as the stored one.
                self._last_seen.put(key, _Seen(state, seen.version))
                return _Outcome(decisions, False)
            try:
                write = self._write(key, state, seen)
            except Exception as exc:
                return _Outcome(self._store_failed(exc, decisions), True)
            self._last_seen.put(key, write.seen)
            if write.won:
                return _Outcome(decisions, False)
            seen = write.seen
        return _Outcome([self._contended()] * takes, False)

    def _take_many(self, state: BucketState | None, now: float, takes: int) -> tuple[BucketState, list[RateDecision]]:
        # The same takes one after another at one instant: exactly what `takes` sequential calls would give.
        decisions = []
        for _ in range(takes):
            state, decision = self._bucket.take(state, now)
            decisions.append(decision)
        assert state is not None
        return state, decisions

    def _estimates(self, key: str, takes: int) -> list[RateDecision]:
        """What this instance would decide from what it last saw, without remembering it."""
        if takes == 0:
            return []
        seen = self._last_seen.get(key)
        now = self._clock() if seen is None else max(self._clock(), seen.state.updated_at)
        return self._take_many(seen.state if seen is not None else None, now, takes)[1]

    # DynamoDB -----------------------------------------------------------------------------------------

    def _write(self, key: str, state: BucketState, seen: _Seen | None) -> _Write:
        version = 1 if seen is None else seen.version + 1
        request: dict[str, Any] = {
            "TableName": self.table,
            "Item": self._item(key, state, version),
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if seen is None:
            request["ConditionExpression"] = _NEW_KEY_CONDITION
        else:
            request["ConditionExpression"] = _SAME_VERSION_CONDITION
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":seen": {"N": str(seen.version)}}
        try:
            self._client.put_item(**request)
        except self._client.exceptions.ConditionalCheckFailedException as exc:
            return _Write(False, self._current(key, exc.response.get("Item")))
        return _Write(True, _Seen(state, version))

    def _current(self, key: str, item: AttributeMap | None) -> _Seen | None:
        if item is None:
            # The item is gone (TTL) or the store did not return it: ask, strongly consistent.
            answer = self._client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True)
            item = answer.get("Item")
        return None if item is None else _parse(item)

    def _item(self, key: str, state: BucketState, version: int) -> AttributeMap:
        full_at = state.updated_at + (self._bucket.capacity - state.tokens) / self._bucket.refill_per_second
        return {
            "pk": {"S": key},
            "tokens": {"N": _number(state.tokens)},
            "updated_at": {"N": _number(state.updated_at)},
            "version": {"N": str(version)},
            "expires_at": {"N": str(math.ceil(full_at) + TTL_MARGIN_SECONDS)},
        }

    # Outcomes without a store answer ------------------------------------------------------------------

    def _store_failed(self, exc: Exception, estimates: list[RateDecision]) -> list[RateDecision]:
        with self._counter_lock:
            self.store_failures += 1
        log.warning("rate_limit.store_failed", error=type(exc).__name__, table=self.table, fail_open=self.fail_open)
        return self._fallback(estimates)

    def _fallback(
        self, estimates: list[RateDecision], retry_after: float = FAIL_CLOSED_RETRY_AFTER
    ) -> list[RateDecision]:
        if self.fail_open:
            return estimates
        return [self._refusal(retry_after)] * len(estimates)

    def _contended(self) -> RateDecision:
        with self._counter_lock:
            self.contended += 1
        log.warning("rate_limit.contended", table=self.table, attempts=self._max_retries + 1)
        return self._refusal(CONTENDED_RETRY_AFTER)

    def _refusal(self, retry_after: float) -> RateDecision:
        return RateDecision(
            allowed=False, limit=self._bucket.capacity, remaining=0, reset_after=retry_after, retry_after=retry_after
        )


def _answer(futures: list[asyncio.Future[RateDecision]], decisions: list[RateDecision]) -> None:
    for future, decision in zip(futures, decisions, strict=True):
        if not future.done():  # its caller went away
            future.set_result(decision)


def _default_client() -> DynamoDBClient:
    import boto3  # type: ignore[import-untyped]  # no stubs installed: the client is `DynamoDBClient` (Any)
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"},
        max_pool_connections=WORKERS,
    )
    # A session of its own: boto3's default session is not safe to share between threads.
    return boto3.session.Session().client("dynamodb", config=config)


def _number(value: float) -> str:
    # The shortest repr reads back as the same float; Decimal spells it as DynamoDB's number format wants
    # (an exponent as `E-17`, never `inf` or `nan`, which cannot occur with a finite clock).
    return str(Decimal(repr(value)))


def _parse(item: AttributeMap) -> _Seen:
    state = BucketState(tokens=float(item["tokens"]["N"]), updated_at=float(item["updated_at"]["N"]))
    return _Seen(state, int(item["version"]["N"]))
