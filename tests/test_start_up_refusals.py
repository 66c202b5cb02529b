"""The server refuses to start on a setting it cannot run with: one line on stderr, exit 2, no traceback.

Each case is an attack on start-up performed against the real entry point (`python -m handlers.server`), in
a child process with a clean environment.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.ports import LOOPBACK
from tests.support.server import ServerFactory, assert_refused_setting, run_server_once


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_an_unknown_log_level_is_one_line_not_a_traceback() -> None:
    assert_refused_setting(run_server_once(LOG_LEVEL="VERBOSE"), "LOG_LEVEL", "VERBOSE")


def test_weights_whose_sum_overflows_are_refused() -> None:
    assert_refused_setting(
        run_server_once(POKEMON_RARITY_WEIGHTS="F=1e308,E=1e308,D=0,C=0,B=0,A=0,S=0,S+=1"), "POKEMON_RARITY_WEIGHTS"
    )


def test_a_whitespace_only_token_does_not_turn_auth_off() -> None:
    line = assert_refused_setting(run_server_once(POKEMON_BEARER_TOKEN="   "), "POKEMON_BEARER_TOKEN")
    assert "'***'" in line


def test_a_port_in_use_names_the_address(taken_port: int) -> None:
    assert_refused_setting(run_server_once(POKEMON_PORT=str(taken_port)), "POKEMON_PORT", f"{LOOPBACK}:{taken_port}")


@pytest.mark.parametrize("host", ["256.1.1.1", "no-such-host.invalid"])
def test_a_host_that_does_not_resolve_is_named(host: str) -> None:
    assert_refused_setting(run_server_once(POKEMON_HOST=host), "POKEMON_HOST", host)


def test_a_token_with_whitespace_around_it_admits_the_client(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_BEARER_TOKEN": " tok "})
    with server.client() as client:
        assert client.get("/v1/generate", headers={"Authorization": "Bearer tok"}).status_code == 200
        assert client.get("/v1/generate", headers={"Authorization": "Bearer  tok"}).status_code == 200
        assert client.get("/v1/generate").status_code == 401
        assert client.get("/v1/generate", headers={"Authorization": "Bearer tok2"}).status_code == 401
