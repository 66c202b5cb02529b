"""Behind a trusted proxy a client cannot pick its own rate-limit bucket: attacks against the real server.

The test client connects from 127.0.0.1, which every server here trusts as its proxy; the budget is 2 a
minute, so the third request from one client is the tell: 429 when it landed in the same bucket.
"""

from __future__ import annotations

import json

import pytest

from tests.support.server import ServerFactory, ServerProcess, assert_refused_setting, run_server_once

BEHIND_PROXY = {"POKEMON_TRUSTED_PROXIES": "127.0.0.1", "POKEMON_RATE_LIMIT_PER_MIN": "2"}


def statuses(server: ServerProcess, requests: list[list[tuple[str, str]]]) -> list[int]:
    with server.client() as client:
        return [client.get("/v1/generate", headers=headers).status_code for headers in requests]


def logged_clients(server: ServerProcess) -> list[str]:
    """The `client` of every `http.response` line; stops the server first, so that every line is written."""
    server.stop()
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    return [line["extra"]["client"] for line in lines if line.get("message") == "http.response"]


@pytest.fixture
def xff_server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory(BEHIND_PROXY)


def test_spoofed_hops_on_the_left_earn_no_fresh_bucket(xff_server: ServerProcess) -> None:
    spoofed = [[("X-Forwarded-For", f"1.2.3.{n}, 198.51.100.7")] for n in range(3)]
    assert statuses(xff_server, spoofed) == [200, 200, 429]


def test_a_forwarded_header_is_ignored_behind_an_x_forwarded_for_proxy(xff_server: ServerProcess) -> None:
    requests = [[("X-Forwarded-For", "198.51.100.8"), ("Forwarded", f"for=5.6.7.{n}")] for n in range(3)]
    assert statuses(xff_server, requests) == [200, 200, 429]


def test_every_header_line_is_one_list(xff_server: ServerProcess) -> None:
    # The client sends its own line; the proxy adds its line after it: the proxy's hop is the client.
    requests = [[("X-Forwarded-For", f"203.0.113.{n}"), ("X-Forwarded-For", "198.51.100.21")] for n in range(3)]
    assert statuses(xff_server, requests) == [200, 200, 429]
    assert logged_clients(xff_server)[-3:] == ["198.51.100.21"] * 3


def test_ports_are_not_part_of_the_client(xff_server: ServerProcess) -> None:
    requests = [[("X-Forwarded-For", f"198.51.100.30:{port}")] for port in (1001, 1002, 1003)]
    assert statuses(xff_server, requests) == [200, 200, 429]
    v6 = [[("X-Forwarded-For", f"[2001:db8:9::1]:{port}")] for port in (443, 444, 445)]
    assert statuses(xff_server, v6) == [200, 200, 429]
    assert logged_clients(xff_server)[-1] == "2001:db8:9::1"


def test_ipv6_clients_share_a_bucket_per_64(xff_server: ServerProcess) -> None:
    same_64 = [[("X-Forwarded-For", address)] for address in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2::3")]
    assert statuses(xff_server, same_64) == [200, 200, 429]
    other_64 = [[("X-Forwarded-For", "2001:db8:1:3::1")]]
    assert statuses(xff_server, other_64) == [200]
    # The log keeps the full address; only the bucket is the prefix.
    assert logged_clients(xff_server)[-2] == "2001:db8:1:2::3"


def test_an_unknown_hop_shares_its_proxys_bucket(xff_server: ServerProcess) -> None:
    requests = [[("X-Forwarded-For", f"198.51.100.{n}, unknown")] for n in range(3)]
    assert statuses(xff_server, requests) == [200, 200, 429]
    assert logged_clients(xff_server)[-1] == "127.0.0.1"


def test_behind_a_forwarded_proxy_x_forwarded_for_is_ignored(server_factory: ServerFactory) -> None:
    server = server_factory({**BEHIND_PROXY, "POKEMON_PROXY_HEADER": "Forwarded"})
    requests = [
        [("X-Forwarded-For", f"5.6.7.{n}"), ("Forwarded", f'for=1.2.3.{n}, for="[2001:db8::7]:443";proto=https')]
        for n in range(3)
    ]
    assert statuses(server, requests) == [200, 200, 429]
    assert logged_clients(server)[-1] == "2001:db8::7"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("POKEMON_PROXY_HEADER", "x-real-ip"),
        ("POKEMON_RATE_LIMIT_IPV6_PREFIX", "16"),
        ("POKEMON_RATE_LIMIT_IPV6_PREFIX", "129"),
        ("POKEMON_RATE_LIMIT_IPV6_PREFIX", "wide"),
    ],
)
def test_bad_proxy_settings_are_one_line_and_exit_2(variable: str, value: str) -> None:
    assert_refused_setting(run_server_once(**{variable: value}), variable, value)
