"""The fleet's name pool in Redis: names the model answered, shared by every instance, refilled under leases.

Every name a model answers goes to one Redis list (`<prefix>names:pool`) and every instance takes its names
from there, so an instance whose model is slow or unreachable still serves model names. The list is bounded
twice: producers only refill it while it is below `target`, and every push trims it to `cap` and renews its
TTL (a fleet that stops serving leaves nothing behind for longer than `ttl`).

The fleet must not hammer the model however many instances run. A model call needs a lease: one of
`lease_slots` keys (`<prefix>names:lease:<i>`), taken with `SET NX PX` by a claim that also counts the names
already in the list plus the leases held, so at most `lease_slots` calls are in flight fleet-wide and none
once the list holds `target` names (no overshoot either: a held lease counts as a name on its way). A lease
holds a random token and only its holder deletes it (compare-and-delete); one whose holder died expires after
`lease_seconds`, which outlives the model call it covers.

Every operation is one Lua script, so one round trip and atomic. Nothing read from Redis is trusted: the
script drops over-long entries before they cross the network, and each name is checked against the name rules
(`sanitize_name`) again here; whatever is not a clean name that this code could have written is dropped and
counted, never served.

This class does I/O only; `core/names/remote.py` decides when to call it. Every call goes through the
`SharedStore` (time limit, breaker) and raises `StoreUnavailable` when Redis does not serve.
"""

from __future__ import annotations

import secrets
from typing import Any, Final, NamedTuple

from core.eventlog import log
from core.names.extract import MAX_NAME_CHARS, sanitize_name
from core.sharedstore import SharedStore

# A clean name is at most MAX_NAME_CHARS letters of the Latin alphabet: two UTF-8 bytes each at most.
MAX_STORED_NAME_BYTES: Final = 2 * MAX_NAME_CHARS
# How far the list may grow past its target (other writers, instances configured with a larger target).
CAP_FACTOR: Final = 4

# KEYS[1] the pool; ARGV[1] how many to pop, ARGV[2] the longest entry returned.
# Returns {names left in the pool, entries dropped as too long or not strings, {names...}}.
_TAKE: Final = """
local taken, dropped = {}, 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'list' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])  -- not ours: someone else wrote the key; the fleet refills it
end
local want = tonumber(ARGV[1])
if want > 0 then
  local popped = redis.call('LPOP', KEYS[1], want)
  if popped then
    for _, entry in ipairs(popped) do
      if type(entry) == 'string' and #entry <= tonumber(ARGV[2]) then
        taken[#taken + 1] = entry
      else
        dropped = dropped + 1
      end
    end
  end
end
return {redis.call('LLEN', KEYS[1]), dropped, taken}
"""

# KEYS[1] the pool, KEYS[2..] the lease slots; ARGV[1] target, ARGV[2] token, ARGV[3] lease milliseconds.
# Returns the slot taken (0-based), -1 when the pool and the calls in flight already make the target, -2 when
# every slot is held.
_CLAIM: Final = """
local held, free = 0, nil
for index = 2, #KEYS do
  if redis.call('EXISTS', KEYS[index]) == 1 then
    held = held + 1
  elseif not free then
    free = index
  end
end
if redis.call('LLEN', KEYS[1]) + held >= tonumber(ARGV[1]) then
  return -1
end
if not free then
  return -2
end
redis.call('SET', KEYS[free], ARGV[2], 'PX', ARGV[3])
return free - 2
"""

# KEYS[1] the pool, KEYS[2] the lease; ARGV[1] the name, ARGV[2] cap, ARGV[3] ttl seconds, ARGV[4] token.
# Pushes, trims (the oldest names go), renews the TTL and hands the lease back; returns the pool's length.
_PUT: Final = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'list' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return redis.call('LLEN', KEYS[1])
"""

# KEYS[1] the lease; ARGV[1] token. Deletes the lease only if it is still this holder's (it may have expired
# and been taken by another instance since).
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease(NamedTuple):
    """The right to make one model call for the fleet: a slot key and the token only its holder knows."""

    key: str
    token: str


class SharedNamePool:
    """One process's handle on the fleet's name list and lease slots in Redis."""

    def __init__(
        self,
        store: SharedStore,
        *,
        target: int,
        ttl: int,
        lease_slots: int,
        lease_seconds: float,
        cap: int | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        if target < 1 or ttl < 1 or lease_slots < 1 or lease_seconds <= 0 or poll_interval <= 0:
            raise ValueError("the shared name pool needs target, ttl, lease slots, lease time and poll interval > 0")
        self.store = store
        self.target = target
        self.ttl = ttl
        self.cap = max(cap or CAP_FACTOR * target, target)
        self.lease_slots = lease_slots
        self.lease_ms = max(1, round(lease_seconds * 1000))
        self.poll_interval = poll_interval  # how often idle workers look at the list
        self.pool_key = store.key("names", "pool")
        self.lease_keys = [store.key("names", "lease", str(index)) for index in range(lease_slots)]
        # Registering computes the script's digest; nothing is sent until the first call.
        self._take = store.client.register_script(_TAKE)
        self._claim = store.client.register_script(_CLAIM)
        self._put = store.client.register_script(_PUT)
        self._release = store.client.register_script(_RELEASE)
        self.level = 0  # names in the list when last seen
        self.taken = 0  # names read from the list and found clean
        self.pushed = 0  # names this process added
        self.rejected = 0  # entries dropped on the way out: never served

    @property
    def available(self) -> bool:
        return self.store.available

    async def take(self, count: int) -> list[str]:
        """Up to `count` clean names off the front of the list (none with `count` 0: a look at its level)."""
        reply: Any = await self.store.run(
            lambda client: self._take(keys=[self.pool_key], args=[count, MAX_STORED_NAME_BYTES], client=client)
        )
        level, dropped, entries = _take_reply(reply)
        names = [name for name in map(clean_name, entries) if name is not None]
        self.level = level
        self.taken += len(names)
        self._count_rejected(dropped + len(entries) - len(names))
        return names

    async def claim(self) -> Lease | None:
        """A lease for one model call when the pool needs a name and a slot is free; None otherwise."""
        token = secrets.token_hex(16)
        slot = await self.store.run(
            lambda client: self._claim(
                keys=[self.pool_key, *self.lease_keys], args=[self.target, token, self.lease_ms], client=client
            )
        )
        if not isinstance(slot, int) or not 0 <= slot < self.lease_slots:
            return None
        return Lease(self.lease_keys[slot], token)

    async def put(self, name: str, lease: Lease) -> None:
        """Adds the name the lease was for, and hands the lease back in the same round trip."""
        level = await self.store.run(
            lambda client: self._put(
                keys=[self.pool_key, lease.key], args=[name, self.cap, self.ttl, lease.token], client=client
            )
        )
        self.pushed += 1
        if isinstance(level, int):
            self.level = level

    async def release(self, lease: Lease) -> None:
        """Hands back a lease whose call gave no name, so another instance may try at once."""
        await self.store.run(lambda client: self._release(keys=[lease.key], args=[lease.token], client=client))

    def _count_rejected(self, count: int) -> None:
        if count <= 0:
            return
        before, self.rejected = self.rejected, self.rejected + count
        # Someone writes to our keys: worth saying, but at 1, 10, 100... so a flood of junk is not a flood of lines.
        if len(str(before)) != len(str(self.rejected)) or before == 0:
            log.warning("shared_names.rejected", count=self.rejected, key=self.pool_key)


def clean_name(entry: object) -> str | None:
    """`entry` as read from Redis, if it is a name this service could have stored: else None."""
    if isinstance(entry, bytes):
        if len(entry) > MAX_STORED_NAME_BYTES:
            return None
        try:
            text = entry.decode("utf-8")
        except UnicodeDecodeError:
            return None
    elif isinstance(entry, str):
        text = entry
    else:
        return None
    # Only what sanitising leaves unchanged: a producer stores sanitised names, so anything else was not ours.
    name = sanitize_name(text)
    return name if name == text else None


def _take_reply(reply: object) -> tuple[int, int, list[object]]:
    """The take script's answer, checked for shape: a tampered server must not make this raise elsewhere."""
    if isinstance(reply, list) and len(reply) == 3:
        level, dropped, entries = reply
        if isinstance(level, int) and isinstance(dropped, int) and isinstance(entries, list):
            return level, dropped, entries
    return 0, 0, []
