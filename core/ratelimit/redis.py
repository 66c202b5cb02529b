"""Token buckets in Redis, shared by every instance of the fleet.

The arithmetic is `TokenBucket.take`, as in `MemoryRateLimiter` and `DynamoDBRateLimiter`; only where the
state lives differs. One key per client, `<prefix>ratelimit:<client>`, a hash:

    tokens      tokens left at `updated_at` (a float, written with `%.17g`: read back bit for bit)
    updated_at  epoch seconds of the last take

and a PEXPIRE to when the bucket is full again, plus a margin: a full bucket and no key mean the same, so
that expiry is exact whenever Redis gets round to it.

Why a Lua script rather than DynamoDB's compare-and-set:

* Redis runs a script atomically, so the read, the refill, the take and the write are one step no other
  instance can come between: the shared limit is exact under any concurrency, with no version, no retries
  and no lost races. One EVALSHA per request, whatever the contention; redis-py's script object reloads
  the script by itself when Redis answers NOSCRIPT (after a restart or a `SCRIPT FLUSH`).
* Lua numbers are IEEE doubles, as Python's floats are, and the script applies the same operations in the
  same order as `TokenBucket.level`/`take`; the time goes in as the shortest repr and the tokens come back
  as a `%.17g` string (a Lua number returned to Redis would become a truncated integer), so the decision
  built here from the tokens left (`TokenBucket.decision`) is the one `take` gives, bit for bit.
* The clock is this process's (`time.time` by default), passed in, as with DynamoDB: a take is computed at
  `max(now, updated_at)`, so `updated_at` never moves backwards and an instance whose clock lags cannot
  refill the same interval twice. Redis's own TIME would be one clock for all, but it would make the
  arithmetic untestable with an injected clock, and the instances' clocks are NTP-synchronised anyway.
* A refusal writes too (the refilled state at `now`): that keeps every later decision identical to the
  in-memory limiter's, and it costs nothing extra inside the one script call.
* Takes that arrive while a call is out are sent together, as one pipeline of script calls (one per take,
  each still atomic on its own) on one connection, in one round trip: under load a request costs a
  fraction of a connection checkout, a socket write and a reply read (measured: 78 µs of client CPU per
  take one by one, 32–36 µs with 16 takes in flight). At most one pipeline is out at a time; a take waits
  for at most the one in flight plus its own. When Redis answers `NOSCRIPT` (a restart, a `SCRIPT
  FLUSH`), the script is loaded and those takes sent again, within the same call.
* Garbage in the key (tampered by whoever can write to Redis: tokens that are not a finite number within
  0…capacity, a non-finite `updated_at`, a key of another type) is treated as no bucket, i.e. a full one,
  and overwritten by the take. So it costs at most one bucketful, never an unbounded one (an infinite or
  NaN count can mint nothing), and never an error: a script error would count as a store failure, and a
  poisoned key could then open the shared breaker for everyone.

When Redis fails (down, slower than the store's time limit, or its breaker open; see `core/sharedstore.py`):
fail open by default: answered by a bounded in-process `MemoryRateLimiter` with the same bucket, so each
client still has a budget, per process, while Redis is away (with N instances up to N times the limit);
or fail closed: refused, with a Retry-After of a few seconds. Failures are counted in `store_failures`;
there is no log line per request (the store logs one `redis.breaker` line per transition). `acquire`
never raises. `health()` says degraded while the store is, and what requests get meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from typing import Any, Final, NamedTuple

from redis.exceptions import NoScriptError  # this module is imported only when a Redis store is configured

from core.health import ComponentHealth, HealthStatus
from core.ratelimit.bucket import Clock, RateDecision, TokenBucket
from core.ratelimit.memory import MemoryRateLimiter
from core.sharedstore import BACKEND, SharedStore, StoreUnavailable

FAIL_CLOSED_RETRY_AFTER: Final = 5.0  # seconds, as with DynamoDB: long enough not to hammer a failing store
TTL_MARGIN: Final = 60.0  # seconds; expiry is exact anyway, the margin only keeps clock skew between instances harmless
KEY_SPACE: Final = "ratelimit"
MAX_PIPELINE: Final = 256  # takes per round trip at most: a bounded write and reply

# KEYS[1] the bucket; ARGV capacity, refill per second, now (epoch seconds), TTL margin (ms).
# Returns {1 or 0 (admitted), tokens left as a '%.17g' string}.
TAKE_SCRIPT: Final = """
local key = KEYS[1]
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local tokens = capacity
local kind = redis.call('TYPE', key)['ok']
if kind == 'hash' then
  local state = redis.call('HMGET', key, 'tokens', 'updated_at')
  local stored = tonumber(state[1])
  local updated_at = tonumber(state[2])
  if stored and updated_at and stored >= 0 and stored <= capacity
     and updated_at > -math.huge and updated_at < math.huge then
    if updated_at > now then now = updated_at end
    tokens = math.min(capacity, stored + (now - updated_at) * refill)
  end
elseif kind ~= 'none' then
  redis.call('DEL', key)
end
local admitted = 0
if tokens >= 1 then
  admitted = 1
  tokens = tokens - 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', key, 'tokens', left, 'updated_at', string.format('%.17g', now))
local ttl = math.min(math.ceil((capacity - tokens) / refill * 1000) + tonumber(ARGV[4]), 2^52)
redis.call('PEXPIRE', key, string.format('%d', ttl))
return {admitted, left}
"""


class _Take(NamedTuple):
    key: str  # the client's key, for the fallback
    arguments: tuple[str, ...]  # the script's KEYS[1] and ARGV, ready to send
    answer: asyncio.Future[RateDecision]


class RedisRateLimiter:
    """Buckets in Redis through the process's `SharedStore`; one script call per take."""

    def __init__(
        self,
        store: SharedStore,
        bucket: TokenBucket,
        *,
        fail_open: bool = True,
        max_local_buckets: int = 100_000,
        clock: Clock = time.time,
        ttl_margin: float = TTL_MARGIN,
    ) -> None:
        if bucket.capacity < 1 or bucket.refill_per_second <= 0:
            raise ValueError("a bucket needs a capacity ≥ 1 and a refill rate above 0")
        if ttl_margin < 0:
            raise ValueError("ttl_margin must be ≥ 0")
        self.fail_open = fail_open
        self.store_failures = 0
        self._store = store
        self._bucket = bucket
        self._clock = clock
        self._local = MemoryRateLimiter(bucket, max_buckets=max_local_buckets, clock=clock)
        self._script = store.client.register_script(TAKE_SCRIPT)  # its digest; `.load` when Redis lacks it
        self._waiting: list[_Take] = []
        self._sender: asyncio.Task[None] | None = None
        self.round_trips = 0
        # The arguments that never change, encoded once.
        self._capacity = str(bucket.capacity)
        self._refill = repr(bucket.refill_per_second)
        self._margin_ms = str(math.ceil(ttl_margin * 1000))

    async def acquire(self, key: str) -> RateDecision:
        arguments = (
            self._store.key(KEY_SPACE, key),
            self._capacity,
            self._refill,
            repr(self._clock()),
            self._margin_ms,
        )
        answer: asyncio.Future[RateDecision] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Take(key, arguments, answer))
        if self._sender is None:
            # A task of its own: a caller that goes away (a client disconnect) cancels only its own answer.
            self._sender = asyncio.create_task(self._send_waiting())
        return await answer

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_PIPELINE], self._waiting[MAX_PIPELINE:]
                try:
                    replies = await self._store.run(functools.partial(self._pipeline, batch=batch))
                except StoreUnavailable:
                    # Those queued meanwhile have waited out this call already: the same rule, at once.
                    batch, self._waiting = batch + self._waiting, []
                    replies = [None] * len(batch)
                for take, reply in zip(batch, replies, strict=True):
                    if not take.answer.done():
                        take.answer.set_result(self._decision(take.key, reply))
        finally:
            self._sender = None

    async def _pipeline(self, client: Any, batch: list[_Take]) -> list[object]:
        replies = await self._send(client, batch)
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await client.script_load(TAKE_SCRIPT)
            again = await self._send(client, [batch[index] for index in missing])
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies

    async def _send(self, client: Any, batch: list[_Take]) -> list[object]:
        self.round_trips += 1
        pipe = client.pipeline(transaction=False)
        for take in batch:
            pipe.evalsha(self._script.sha, 1, *take.arguments)
        # Error replies come back in the list (one tampered key must not fail the others' takes).
        return list(await pipe.execute(raise_on_error=False))

    def _decision(self, key: str, reply: object) -> RateDecision:
        if isinstance(reply, list) and len(reply) == 2:
            admitted, left = reply
            try:
                return self._bucket.decision(float(left), admitted == 1)
            except (TypeError, ValueError):
                pass
        # No reply (the store did not answer) or one not of this script's shape: not to be trusted.
        return self._unavailable(key)

    def health(self) -> ComponentHealth:
        if self._store.health().status is HealthStatus.OK:
            return ComponentHealth(BACKEND)
        rule = "admitted on this process's own budget" if self.fail_open else "refused"
        detail = f"store unreachable (breaker {self._store.state}): requests are {rule} until it answers"
        return ComponentHealth(BACKEND, HealthStatus.DEGRADED, detail)

    def _unavailable(self, key: str) -> RateDecision:
        self.store_failures += 1
        if self.fail_open:
            return self._local.acquire_now(key)
        return RateDecision(
            allowed=False,
            limit=self._bucket.capacity,
            remaining=0,
            reset_after=FAIL_CLOSED_RETRY_AFTER,
            retry_after=FAIL_CLOSED_RETRY_AFTER,
        )
