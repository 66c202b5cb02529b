"""Guessing the bearer token is slowed down: failed attempts have their own budget per client.

Unit tests of `AuthFailureGuard` on a fake clock, then attacks against the real server.
"""

from __future__ import annotations

import asyncio

import pytest

from core.ratelimit import MemoryRateLimiter, TokenBucket
from core.ratelimit.authfailures import AuthFailureGuard
from tests.support.clock import FakeClock
from tests.support.server import ServerFactory, assert_refused_setting, run_server_once

TOKEN = "right-t0ken-for-tests"
RIGHT = {"Authorization": f"Bearer {TOKEN}"}
WRONG = {"Authorization": "Bearer wrong-guess"}


def guard(per_minute: int, clock: FakeClock) -> AuthFailureGuard:
    limiter = MemoryRateLimiter(TokenBucket.per_minute(per_minute), clock=clock)
    return AuthFailureGuard(limiter, per_minute=per_minute, clock=clock)


def test_the_guard_blocks_after_the_last_failure_and_refills() -> None:
    clock = FakeClock()
    failures = guard(3, clock)
    for _ in range(3):
        assert failures.blocked("a") is None
        assert asyncio.run(failures.record_failure("a")) is None
    refusal = failures.blocked("a")
    assert refusal is not None and not refusal.allowed
    assert refusal.retry_after == pytest.approx(20.0)  # 3 a minute: one token every 20 s
    assert failures.blocked("b") is None  # another client is not affected
    clock.now += 19.9
    assert failures.blocked("a") is not None
    clock.now += 0.2
    assert failures.blocked("a") is None  # checking spent nothing: one failure is allowed again
    assert asyncio.run(failures.record_failure("a")) is None
    assert failures.blocked("a") is not None


def test_a_failure_refused_by_the_store_is_a_refusal() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(TokenBucket.per_minute(1), clock=clock)
    asyncio.run(limiter.acquire("auth:a"))  # another instance spent the last one
    failures = AuthFailureGuard(limiter, per_minute=1, clock=clock)
    refusal = asyncio.run(failures.record_failure("a"))
    assert refusal is not None and refusal.retry_after == pytest.approx(60.0)
    assert failures.blocked("a") is not None


BEHIND_PROXY = {"POKEMON_BEARER_TOKEN": TOKEN, "POKEMON_TRUSTED_PROXIES": "127.0.0.1"}


def test_thirty_wrong_tokens_then_even_the_right_one_waits(server_factory: ServerFactory) -> None:
    server = server_factory({**BEHIND_PROXY, "POKEMON_RATE_LIMIT_PER_MIN": "2"})
    guesser, other = "198.51.100.66", "198.51.100.77"
    with server.client() as client:
        wrong = [client.get("/v1/generate", headers={**WRONG, "X-Forwarded-For": guesser}) for _ in range(30)]
        right = client.get("/v1/generate", headers={**RIGHT, "X-Forwarded-For": guesser})
        wrong_again = client.get("/v1/generate", headers={**WRONG, "X-Forwarded-For": guesser})
        others = [client.get("/v1/generate", headers={**RIGHT, "X-Forwarded-For": other}) for _ in range(3)]
    assert {response.status_code for response in wrong} == {401}
    for throttled in (right, wrong_again):
        assert throttled.status_code == 429
        assert throttled.json()["error"]["code"] == "RATE_LIMITED"
        assert int(throttled.headers["Retry-After"]) >= 1
    # Another client is unaffected, and its generation budget (2) is its own: the 401s spent none of it.
    assert [response.status_code for response in others] == [200, 200, 429]
    server.stop()
    assert any('"auth.throttled"' in line for line in server.log_lines())


def test_401s_spend_no_generation_budget(server_factory: ServerFactory) -> None:
    server = server_factory({**BEHIND_PROXY, "POKEMON_RATE_LIMIT_PER_MIN": "2"})
    with server.client() as client:
        wrong = [client.get("/v1/generate", headers={**WRONG, "X-Forwarded-For": "203.0.113.9"}) for _ in range(5)]
        right = [client.get("/v1/generate", headers={**RIGHT, "X-Forwarded-For": "203.0.113.9"}) for _ in range(3)]
    assert {response.status_code for response in wrong} == {401}
    assert [response.status_code for response in right] == [200, 200, 429]


def test_a_client_that_never_failed_is_served(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_BEARER_TOKEN": TOKEN, "POKEMON_AUTH_FAILURES_PER_MIN": "1"})
    with server.client() as client:
        assert client.get("/v1/generate", headers=RIGHT).status_code == 200
        # A missing token is no guess: it spends nothing.
        assert [client.get("/v1/generate").status_code for _ in range(3)] == [401] * 3
        assert client.get("/v1/generate", headers=RIGHT).status_code == 200
        assert client.get("/v1/generate", headers=WRONG).status_code == 401
        assert client.get("/v1/generate", headers=RIGHT).status_code == 429


def test_zero_turns_the_throttle_off(server_factory: ServerFactory) -> None:
    server = server_factory(
        {"POKEMON_BEARER_TOKEN": TOKEN, "POKEMON_AUTH_FAILURES_PER_MIN": "0", "POKEMON_RATE_LIMIT_PER_MIN": "0"}
    )
    with server.client() as client:
        assert {client.get("/v1/generate", headers=WRONG).status_code for _ in range(40)} == {401}
        assert client.get("/v1/generate", headers=RIGHT).status_code == 200


def test_the_guard_is_built_only_with_auth_and_a_budget() -> None:
    from core.config import load_settings
    from core.wiring import build_auth_failure_guard

    assert build_auth_failure_guard(load_settings(bearer_token=None)) is None
    assert build_auth_failure_guard(load_settings(bearer_token=TOKEN, auth_failures_per_min=0)) is None
    assert isinstance(build_auth_failure_guard(load_settings(bearer_token=TOKEN)), AuthFailureGuard)


@pytest.mark.parametrize("value", ["-1", "many"])
def test_a_bad_budget_is_one_line_and_exit_2(value: str) -> None:

    assert_refused_setting(run_server_once(POKEMON_AUTH_FAILURES_PER_MIN=value), "POKEMON_AUTH_FAILURES_PER_MIN", value)
