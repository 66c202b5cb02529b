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
* Within one process, concurrent takes for the same key wait for each other (`acquire` holds a per-key
  asyncio lock) instead of racing each other through DynamoDB: only other instances cause lost races,
  so a burst from one client neither multiplies writes nor runs out of retries.
* `updated_at` never moves backwards: a take is computed at `max(now, updated_at)`, so an instance whose
  clock lags cannot refill the same interval twice.

The clock must be epoch seconds (the default `time.time`): it is shared by instances and feeds the TTL.

When the store fails (network, throttling, any error): fail open by default (admitted, logged
`rate_limit.store_failed`, counted in `store_failures`), or fail closed (refused, Retry-After of a few
seconds). After `max_retries` lost races in a row the request is refused with a short Retry-After and
counted in `contended`: admitting it would break the limit exactly when one key is hammered concurrently.
`acquire` never raises.

boto3 is imported when a limiter is built, never when this module is imported; its own configuration
(region, credentials, `AWS_ENDPOINT_URL_DYNAMODB`) applies. Calls are blocking, so they run on a small
dedicated thread pool, sized like botocore's connection pool, rather than on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Final, NamedTuple

from core.eventlog import log
from core.ratelimit.bucket import BucketState, RateDecision, TokenBucket

# boto3 ships no type information here: the low-level client is `Any`, in this one place.
DynamoDBClient = Any
AttributeMap = dict[str, dict[str, str]]

FAIL_CLOSED_RETRY_AFTER: Final = 5.0  # seconds: long enough not to hammer a failing store
CONTENDED_RETRY_AFTER: Final = 1.0
TTL_MARGIN_SECONDS: Final = 60  # TTL deletion is lazy anyway; the margin only keeps clock skew harmless
CONNECT_TIMEOUT: Final = 0.5
READ_TIMEOUT: Final = 1.0  # a rate-limit check must not hold a request longer than the work it guards
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


class _KeyLocks:
    """An asyncio lock per key, kept only while a take for that key runs or waits (event loop thread only)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Write(NamedTuple):
    won: bool
    seen: _Seen | None  # what the item holds now: ours when won, the winner's (or None: no item) when lost


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
        self._owns_client = client is None
        self._client: DynamoDBClient = client if client is not None else _default_client()
        self._last_seen = _LastSeen(max_cached_keys)
        self._key_locks = _KeyLocks()
        self._counter_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ratelimit-dynamodb")

    async def acquire(self, key: str) -> RateDecision:
        try:
            async with self._key_locks.hold(key):
                return await asyncio.get_running_loop().run_in_executor(self._executor, self.acquire_blocking, key)
        except Exception as exc:  # outside a store call (a shut-down executor, a bug): still never raise
            return self._store_failed(exc, None)

    def acquire_blocking(self, key: str) -> RateDecision:
        """`acquire` for a worker thread: blocks for up to the client's timeouts; no per-key waiting, so
        concurrent callers for one key race through DynamoDB (still exact, at the cost of retries)."""
        seen = self._last_seen.get(key)
        for _ in range(self._max_retries + 1):
            now = self._clock() if seen is None else max(self._clock(), seen.state.updated_at)
            state, decision = self._bucket.take(seen.state if seen is not None else None, now)
            if not decision.allowed and seen is not None:
                # Nothing to write; remembering the refilled state keeps later takes identical to the
                # in-memory limiter's, and it is the same bucket as the stored one.
                self._last_seen.put(key, _Seen(state, seen.version))
                return decision
            try:
                write = self._write(key, state, seen)
            except Exception as exc:
                return self._store_failed(exc, decision)
            self._last_seen.put(key, write.seen)
            if write.won:
                return decision
            seen = write.seen
        return self._contended()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

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

    def _store_failed(self, exc: Exception, estimate: RateDecision | None) -> RateDecision:
        with self._counter_lock:
            self.store_failures += 1
        log.warning("rate_limit.store_failed", error=type(exc).__name__, table=self.table, fail_open=self.fail_open)
        if not self.fail_open:
            return self._refusal(FAIL_CLOSED_RETRY_AFTER)
        # What this instance would have decided from what it knows (a full bucket when it knows nothing).
        return estimate if estimate is not None else self._bucket.take(None, 0.0)[1]

    def _contended(self) -> RateDecision:
        with self._counter_lock:
            self.contended += 1
        log.warning("rate_limit.contended", table=self.table, attempts=self._max_retries + 1)
        return self._refusal(CONTENDED_RETRY_AFTER)

    def _refusal(self, retry_after: float) -> RateDecision:
        return RateDecision(
            allowed=False, limit=self._bucket.capacity, remaining=0, reset_after=retry_after, retry_after=retry_after
        )


def _default_client() -> DynamoDBClient:
    import boto3  # type: ignore[import-untyped]  # no stubs installed: the client is `DynamoDBClient` (Any)
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"max_attempts": 2, "mode": "standard"},
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
