"""One Redis for the fleet's shared state: the connection pool, its time limits and its circuit breaker.

The name pool (`core/names/shared.py`) and the rate limit (`core/ratelimit/redis.py`) both go through one
`SharedStore` per process, so Redis is one component: one pool of connections, one breaker, one health
line, one `redis.breaker` log line per transition whoever noticed it.

Redis going away must not become an outage. Every call is bounded by `timeout` (connect and reply alike,
no retries: a retry would only wait out the same timeout again), and after `breaker_failures` failed calls
in a row the breaker opens: for `breaker_cooldown` seconds no call goes out and `run` raises
`StoreUnavailable` at once, so a request never waits for a store known to be down. Then one probe goes
out; its answer closes the breaker or opens it again. Each caller decides what a missing store means to
it (local names, the fail-open rule).

redis-py is imported when a store is built, never with this module: a process without `POKEMON_REDIS_URL`
loads none of it. The client is bound to the event loop it first runs on (one per process here).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from core.breaker import BreakerState, CircuitBreaker
from core.eventlog import log
from core.health import ComponentHealth, HealthStatus
from core.redaction import mask_url_credentials

BACKEND: Final = "redis"
T = TypeVar("T")

# redis-py's asyncio client ships its own annotations, but they are not worth importing on every start-up
# for a type: the client is `Any` here, in this one place.
RedisClient = Any


class StoreUnavailable(Exception):
    """The shared store did not answer (down, slow, refusing, or its breaker is open); `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SharedStore:
    """A Redis client with a time limit on every call and a breaker in front of it."""

    def __init__(
        self,
        client: RedisClient,
        *,
        address: str,
        prefix: str = "pokemon:",
        timeout: float = 0.25,
        breaker_failures: int = 3,
        breaker_cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        error_replies: tuple[type[BaseException], ...] = (),
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be above 0")
        self.client = client
        self.address = address  # for logs and /health, credentials masked
        self.prefix = prefix
        self.timeout = timeout
        self.failed_calls = 0
        self._breaker = CircuitBreaker(
            failure_threshold=breaker_failures, cooldown=breaker_cooldown, clock=clock, on_change=self._log_change
        )
        self._last_error: str | None = None
        # Errors that are Redis's answer (WRONGTYPE, a script error): the store is up, only that call failed.
        self._error_replies = error_replies

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "pokemon:",
        timeout: float = 0.25,
        max_connections: int = 64,
        breaker_failures: int = 3,
        breaker_cooldown: float = 5.0,
    ) -> SharedStore:
        """A store on `redis://[:password@]host:port/db` or `rediss://…` (TLS), with one bounded pool."""
        import redis.asyncio as redis_asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ResponseError

        # A blocking pool: past `max_connections` a call waits for a free connection (up to `timeout`)
        # rather than failing at once, and the process never opens more than that many.
        pool = redis_asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        client = redis_asyncio.Redis(connection_pool=pool)
        return cls(
            client,
            address=mask_url_credentials(url),
            prefix=prefix,
            timeout=timeout,
            breaker_failures=breaker_failures,
            breaker_cooldown=breaker_cooldown,
            error_replies=(ResponseError,),
        )

    @property
    def state(self) -> BreakerState:
        return self._breaker.state

    @property
    def available(self) -> bool:
        """Whether a call may go out now (the breaker is closed, or a probe is due); spends nothing."""
        return self._breaker.state is not BreakerState.OPEN

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def run(self, operation: Callable[[RedisClient], Awaitable[T]]) -> T:
        """`operation(client)` within the time limit; `StoreUnavailable` when it fails or the breaker is open.

        An error reply (a key of another type than the operation expects: someone else wrote it) fails that
        call only: Redis answered, so the breaker counts a success, and a tampered key cannot take the
        store away from every other user. Any other error (a bug) counts as a failure: the caller is told the
        store did not serve, and the breaker decides when to try again."""
        if not self._breaker.try_acquire():
            raise StoreUnavailable("breaker open")
        try:
            async with asyncio.timeout(self.timeout):
                result = await operation(self.client)
        except TimeoutError:
            self._failed("timeout")
            raise StoreUnavailable("timeout") from None
        except asyncio.CancelledError:
            # The caller went away (a client disconnect): no verdict on the store, but a probe must not stay
            # taken for good.
            self._breaker.release_probe()
            raise
        except self._error_replies as exc:
            self._breaker.record_success()
            raise StoreUnavailable("error reply") from exc
        except Exception as exc:
            self._failed(type(exc).__name__)
            raise StoreUnavailable(type(exc).__name__) from exc
        self._breaker.record_success()
        self._last_error = None
        return result

    def health(self) -> ComponentHealth:
        state = self._breaker.state
        if state is BreakerState.CLOSED and self._breaker.consecutive_failures == 0:
            return ComponentHealth(BACKEND, HealthStatus.OK, self.address)
        reason = f": {self._last_error}" if self._last_error else ""
        return ComponentHealth(BACKEND, HealthStatus.DEGRADED, f"{self.address} unreachable (breaker {state}{reason})")

    async def aclose(self) -> None:
        await self.client.aclose()

    def _failed(self, reason: str) -> None:
        self.failed_calls += 1
        self._last_error = reason
        self._breaker.record_failure()

    def _log_change(self, previous: BreakerState, current: BreakerState) -> None:
        # Two lines per outage: the store went away, the store is back. A probe going out, or failing again,
        # is not news.
        if current is BreakerState.CLOSED:
            log.info("redis.breaker", previous=previous, state=current, store=self.address)
        elif previous is BreakerState.CLOSED:
            log.warning("redis.breaker", previous=previous, state=current, store=self.address, reason=self._last_error)
