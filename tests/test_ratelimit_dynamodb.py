"""The DynamoDB rate limiter against a real moto server process, over real HTTP.

The server is `tests.support.moto_locked`: moto with one lock per request, so that conditional writes are atomic
as in DynamoDB and the exactness test tests this limiter, not moto.
"""

from __future__ import annotations

import asyncio
import io
import json
import selectors
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import wiring
from core.config import Settings
from core.eventlog import configure_logging
from core.health import HealthStatus
from core.ratelimit import MemoryRateLimiter, RateDecision, TokenBucket
from core.ratelimit.dynamodb import TTL_MARGIN_SECONDS, DynamoDBRateLimiter
from tests.support.clock import EPOCH, FakeClock
from tests.support.environment import AWS_ENV
from tests.support.paths import REPO
from tests.support.ports import free_port
from tests.support.released_together import run_processes_together


@dataclass(frozen=True)
class Moto:
    endpoint: str
    table: str
    client: Any  # a boto3 DynamoDB client on the server, shared by the limiters of a test

    def limiter(self, bucket: TokenBucket, **kwargs: Any) -> DynamoDBRateLimiter:
        return DynamoDBRateLimiter(self.table, bucket, client=self.client, **kwargs)


def _wait_ready(process: subprocess.Popen[str], timeout: float = 20.0) -> int:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"moto server not ready within {timeout}s")
    line = process.stdout.readline()
    if not line.startswith("READY "):
        raise RuntimeError(f"moto server said {line!r} (exit code {process.poll()})")
    return int(line.split()[1])


def _create_table(client: Any, table: str) -> None:
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.moto_locked", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{_wait_ready(process)}"
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
                patch.delenv(name, raising=False)
            for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL_DYNAMODB": endpoint}.items():
                patch.setenv(name, value)
            import boto3  # type: ignore[import-untyped]

            client = boto3.session.Session().client("dynamodb")
            _create_table(client, "rate-limits")
            yield Moto(endpoint, "rate-limits", client)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _key() -> str:
    return f"client-{uuid.uuid4().hex}"


def _acquire(limiter: DynamoDBRateLimiter | MemoryRateLimiter, key: str) -> RateDecision:
    return asyncio.run(limiter.acquire(key))


def test_capacity_then_refusal_then_refill(moto: Moto) -> None:
    clock = FakeClock(EPOCH)
    limiter = moto.limiter(TokenBucket.per_minute(3), clock=clock)
    key = _key()
    decisions = [_acquire(limiter, key) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[-1].headers()["Retry-After"] == "20"  # 3 per minute: one token every 20 s
    clock.advance(19.9)
    assert not _acquire(limiter, key).allowed
    clock.advance(0.1)
    assert _acquire(limiter, key).allowed
    assert not _acquire(limiter, key).allowed
    assert _acquire(limiter, _key()).allowed  # another client, another bucket
    limiter.close()


# Any float step: the same floats must come out of both stores, rounding included.
steps = st.lists(st.tuples(st.floats(0.0, 45.0), st.integers(0, 1)), min_size=1, max_size=14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=steps)
def test_decisions_are_those_of_the_memory_limiter(moto: Moto, script: list[tuple[float, int]]) -> None:
    bucket = TokenBucket.per_minute(4)
    clock = FakeClock(EPOCH)
    shared = moto.limiter(bucket, clock=clock)
    memory = MemoryRateLimiter(bucket, clock=clock)
    keys = [_key(), _key()]
    for advance, which in script:
        clock.advance(advance)
        expected, got = _acquire(memory, keys[which]), _acquire(shared, keys[which])
        assert got == expected
        assert got.headers() == expected.headers()
    shared.close()


# Quarter seconds at 2 tokens a second: exact binary arithmetic, so two instances that each compute from
# what they last saw must agree with one in-memory bucket to the last bit.
quarter_steps = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 1)), min_size=1, max_size=16)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=quarter_steps)
def test_two_instances_share_one_bucket(moto: Moto, script: list[tuple[int, int]]) -> None:
    bucket = TokenBucket(capacity=3, refill_per_second=2.0)
    clock = FakeClock(EPOCH)
    instances = [moto.limiter(bucket, clock=clock), moto.limiter(bucket, clock=clock)]
    memory = MemoryRateLimiter(bucket, clock=clock)
    key = _key()
    for quarters, which in script:
        clock.advance(quarters / 4)
        assert _acquire(instances[which], key) == _acquire(memory, key)
    for instance in instances:
        instance.close()


def test_the_stored_item_expires_when_the_bucket_is_full_again(moto: Moto) -> None:
    limiter = moto.limiter(TokenBucket.per_minute(6))  # the real clock: the TTL is epoch seconds
    key = _key()
    before = time.time()
    assert _acquire(limiter, key).allowed
    item = moto.client.get_item(TableName=moto.table, Key={"pk": {"S": key}}, ConsistentRead=True)["Item"]
    assert item["pk"] == {"S": key}
    assert float(item["tokens"]["N"]) == 5.0
    assert item["version"] == {"N": "1"}
    expires_at = int(item["expires_at"]["N"])
    assert expires_at > time.time()
    # One token missing refills in 10 s; the TTL adds its margin on top.
    assert before + 10 + TTL_MARGIN_SECONDS <= expires_at <= time.time() + 11 + TTL_MARGIN_SECONDS
    limiter.close()


def test_a_lost_race_and_a_vanished_item_are_recovered(moto: Moto) -> None:
    bucket = TokenBucket.per_minute(2)
    clock = FakeClock(EPOCH)
    first, second = moto.limiter(bucket, clock=clock), moto.limiter(bucket, clock=clock)
    key = _key()
    assert _acquire(first, key).remaining == 1
    assert _acquire(second, key).remaining == 0  # lost the new-key race, retried from the winner's item
    assert not _acquire(first, key).allowed  # refused from what it saw: the bucket has only emptied since
    # TTL removes idle items; whoever saw the old one must start from a full bucket again.
    moto.client.delete_item(TableName=moto.table, Key={"pk": {"S": key}})
    clock.advance(60)
    assert _acquire(first, key).remaining == 1
    assert _acquire(second, key).remaining == 0
    assert first.store_failures == second.store_failures == 0
    first.close()
    second.close()


# Each worker process: one limiter (its own memory of the bucket), many threads released together.
WORKER = textwrap.dedent(
    """
    import json, sys
    from core.ratelimit import TokenBucket
    from core.ratelimit.dynamodb import DynamoDBRateLimiter
    from core.eventlog import configure_logging
    from tests.support.released_together import release_threads_together

    configure_logging(stream=sys.stderr, background=False)  # stdout carries the result only

    table, key, threads, takes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    # A clock that never moves: no refill, and every write carries the same updated_at.
    limiter = DynamoDBRateLimiter(table, TokenBucket(20, 1.0), clock=lambda: 1_700_000_000.0, max_retries=1000)

    def takes_admitted():
        return sum(limiter.acquire_blocking(key).allowed for _ in range(takes))

    admitted = release_threads_together(threads, takes_admitted)
    print(json.dumps({"admitted": sum(admitted), "failures": limiter.store_failures, "contended": limiter.contended}))
    """
)


def test_exactly_capacity_is_admitted_across_processes_and_threads(moto: Moto) -> None:
    key = _key()
    # Released together: 4 processes × 16 threads, 320 takes on one bucket of 20.
    results = run_processes_together([sys.executable, "-c", WORKER, moto.table, key, "16", "5"], 4, timeout=30)
    assert sum(result["admitted"] for result in results) == 20
    assert all(result["failures"] == 0 and result["contended"] == 0 for result in results)


def test_a_burst_in_one_process_waits_instead_of_racing(moto: Moto) -> None:
    limiter = moto.limiter(TokenBucket(10, 1.0), clock=lambda: EPOCH)  # default retries; no refill
    key = _key()

    async def burst() -> list[RateDecision]:
        return await asyncio.gather(*(limiter.acquire(key) for _ in range(50)))

    decisions = asyncio.run(burst())
    assert sum(decision.allowed for decision in decisions) == 10
    assert limiter.contended == 0  # takes for one key queued in the process: no lost race, no retry
    limiter.close()


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{free_port()}")  # nothing listens


def test_fail_open_admits_counts_and_logs_quickly(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    _unreachable(monkeypatch)
    stream = io.StringIO()
    configure_logging(stream=stream, background=False)
    limiter = DynamoDBRateLimiter(moto.table, TokenBucket.per_minute(5))
    started = time.monotonic()
    decision = _acquire(limiter, _key())
    assert time.monotonic() - started < 1.5  # short timeouts, one attempt
    assert decision.allowed
    assert decision.remaining == 4  # what a full bucket would say
    assert limiter.store_failures == 1
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["message"], e["extra"]["error"]) for e in events] == [
        ("rate_limit.store_failed", "EndpointConnectionError")
    ]
    limiter.close()


def test_fail_closed_refuses_with_a_retry_after(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    _unreachable(monkeypatch)
    limiter = DynamoDBRateLimiter(moto.table, TokenBucket.per_minute(5), fail_open=False)
    decision = _acquire(limiter, _key())
    assert not decision.allowed
    assert int(decision.headers()["Retry-After"]) >= 1
    assert limiter.store_failures == 1
    limiter.close()


class _Switchable:
    """A client that forwards to whichever client `target` is now: a store that fails, then comes back."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def test_after_the_cooldown_one_probe_closes_the_breaker(moto: Moto) -> None:
    import boto3
    from botocore.config import Config  # type: ignore[import-untyped]

    from tests.support.silent_server import SilentServer

    stream = io.StringIO()
    configure_logging(stream=stream, background=False)
    clock = FakeClock(0.0)
    with SilentServer() as silent:
        config = Config(read_timeout=0.3, retries={"total_max_attempts": 1})
        hung = boto3.session.Session().client("dynamodb", endpoint_url=silent.url, config=config)
        client = _Switchable(hung)
        limiter = DynamoDBRateLimiter(
            moto.table,
            TokenBucket(3, 1.0),
            client=client,
            breaker_failures=1,
            breaker_cooldown=5.0,
            breaker_clock=clock,
        )
        key = _key()
        assert _acquire(limiter, key).allowed  # the store hangs: failed open, and the breaker opens
        assert limiter.health().status is HealthStatus.DEGRADED
        client.target = moto.client  # the store is back, but nobody asks it during the cool-down
        started = time.monotonic()
        assert _acquire(limiter, key).allowed
        assert time.monotonic() - started < 0.05
        assert limiter.health().status is HealthStatus.DEGRADED
        clock.advance(5.0)
        assert _acquire(limiter, key).remaining == 2  # the probe: the store's first take for this key
        assert limiter.health().status is HealthStatus.OK
        assert silent.accepted == 1
        limiter.close()
        hung.close()
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["extra"]["previous"], e["extra"]["state"]) for e in events if e["message"] == "rate_limit.breaker"] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert [e["message"] for e in events].count("rate_limit.store_failed") == 1


def test_any_store_error_is_a_store_failure(moto: Moto) -> None:
    limiter = DynamoDBRateLimiter("no-such-table", TokenBucket.per_minute(5), client=moto.client)
    assert _acquire(limiter, _key()).allowed
    assert limiter.store_failures == 1
    limiter.close()


def test_the_table_setting_chooses_this_store(moto: Moto) -> None:
    config = Settings(rate_limit_table=moto.table, rate_limit_per_min=7, rate_limit_fail_open=False)
    limiter = wiring.build_rate_limiter(config)
    assert isinstance(limiter, DynamoDBRateLimiter)
    assert limiter.table == moto.table
    assert not limiter.fail_open
    key = _key()
    assert [_acquire(limiter, key).allowed for _ in range(8)] == [True] * 7 + [False]
    limiter.close()


def test_boto3_is_imported_only_when_a_limiter_is_built(moto: Moto) -> None:
    code = textwrap.dedent(
        """
        import sys
        import core.ratelimit.dynamodb as module
        from core.ratelimit import TokenBucket
        assert "boto3" not in sys.modules
        module.DynamoDBRateLimiter("rate-limits", TokenBucket.per_minute(1)).close()
        assert "boto3" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)
