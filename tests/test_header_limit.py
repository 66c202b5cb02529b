"""The request line and headers are capped (POKEMON_MAX_HEADER_BYTES, 16 KB by default): past the cap, 431 and
a closed connection, with nothing kept; bodies never count.

Each case is an attack on the real server process (`python -m handlers.server`), made with a raw socket so
the bytes on the wire are exactly the attack's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.server import ServerFactory, ServerProcess, assert_refused_setting, run_server_once

KB = 1024
OK_LINE = b"HTTP/1.1 200 "
REFUSED_LINE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


def address(server: ServerProcess) -> tuple[str, int]:
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def request(target: str = "/health", headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: localhost"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response from `sock` (any bytes already read wait in `buffer`): status line, headers, body."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(64 * KB)
        assert chunk, f"connection closed before a full response: {bytes(buffer)[:200]!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status, *header_lines = head.split(b"\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(64 * KB)
        assert chunk, "connection closed inside a body"
        rest += chunk
    buffer[:] = rest[length:]
    return status + b"\r\n", headers, rest[:length]


def closed(sock: socket.socket, buffer: bytearray) -> bool:
    """Whether the server closes the connection without sending anything more."""
    try:
        while chunk := sock.recv(64 * KB):
            buffer += chunk
    except ConnectionResetError:
        pass
    return not buffer


def exchange(server: ServerProcess, payload: bytes) -> tuple[bytes, dict[str, str], bytes, bool]:
    """Send `payload` on a fresh connection: the first response, and whether the server then closed it."""
    with socket.create_connection(address(server), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the answer may be waiting: read it
            sock.sendall(payload)
        buffer = bytearray()
        status, headers, body = read_response(sock, buffer)
        # A kept-alive connection would stay open until uvicorn's keep-alive timeout: only a `close` is waited for.
        return status, headers, body, headers.get("connection") == "close" and closed(sock, buffer)


def assert_refused(status: bytes, headers: dict[str, str], body: bytes, was_closed: bool, limit: int = 16384) -> None:
    assert status == REFUSED_LINE
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "HEADERS_TOO_LARGE"
    assert str(limit) in error["message"]
    assert was_closed


def assert_serves(server: ServerProcess) -> None:
    status, _, body, _ = exchange(server, request())
    assert status.startswith(OK_LINE), status
    assert json.loads(body)["status"] == "ok"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


ATTACKS = {
    "one 64 KB header": request(headers=[("X-Big", "a" * 64 * KB)]),
    "1000 small headers": request(headers=[(f"X-Pad-{n:04d}", "b" * 16) for n in range(1000)]),
    "a 20 KB query": request(target="/health?q=" + "c" * 20 * KB),
}


@pytest.mark.parametrize("payload", ATTACKS.values(), ids=ATTACKS.keys())
def test_an_oversized_header_block_is_refused_quickly_and_the_server_goes_on(
    shared_server: ServerProcess, payload: bytes
) -> None:
    started = time.monotonic()
    assert_refused(*exchange(shared_server, payload))
    assert time.monotonic() - started < 3
    assert_serves(shared_server)


def test_a_header_block_still_arriving_is_refused_before_it_ends(shared_server: ServerProcess) -> None:
    with socket.create_connection(address(shared_server), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"d" * 64 * KB)  # no end of headers
        buffer = bytearray()
        assert_refused(*read_response(sock, buffer), closed(sock, buffer))
    assert_serves(shared_server)


def test_15_kb_of_headers_are_served(shared_server: ServerProcess) -> None:
    status, _, body, _ = exchange(shared_server, request(headers=[("X-Big", "e" * 15 * KB)]))
    assert status.startswith(OK_LINE), status
    assert json.loads(body)["status"] == "ok"


def test_a_keep_alive_connection_gets_200_then_431(shared_server: ServerProcess) -> None:
    with socket.create_connection(address(shared_server), timeout=10) as sock:
        buffer = bytearray()
        sock.sendall(request())
        status, headers, _ = read_response(sock, buffer)
        assert status.startswith(OK_LINE), status
        assert headers.get("connection") != "close"
        sock.sendall(request(headers=[("X-Big", "f" * 20 * KB)]))
        status, headers, body = read_response(sock, buffer)
        assert_refused(status, headers, body, closed(sock, buffer))


def test_pipelined_requests_keep_their_order_when_the_last_is_refused(shared_server: ServerProcess) -> None:
    with socket.create_connection(address(shared_server), timeout=10) as sock:
        buffer = bytearray()
        sock.sendall(request() + request(headers=[("X-Big", "g" * 20 * KB)]))
        status, _, body = read_response(sock, buffer)
        assert status.startswith(OK_LINE), status
        assert json.loads(body)["status"] == "ok"
        assert_refused(*read_response(sock, buffer), closed(sock, buffer))


def test_a_body_does_not_count(shared_server: ServerProcess) -> None:
    # The body arrives in the same reads as the headers, and a second request's headers right behind it.
    big = b"h" * 100 * KB
    with socket.create_connection(address(shared_server), timeout=10) as sock:
        buffer = bytearray()
        sock.sendall(request(body=big) + request(body=big) + request())
        for _ in range(3):
            status, _, _ = read_response(sock, buffer)
            assert status.startswith(OK_LINE), status


def test_oversized_requests_leave_nothing_behind(shared_server: ServerProcess) -> None:
    attack = request(headers=[("X-Big", "i" * 1024 * KB)])
    for _ in range(10):  # let the allocator settle on its working set first
        assert_refused(*exchange(shared_server, attack))
    before = rss_kb(shared_server.process.pid)
    for _ in range(50):
        assert_refused(*exchange(shared_server, attack))
    grown = rss_kb(shared_server.process.pid) - before
    assert grown < 4 * KB, f"RSS grew by {grown} KB over 50 refused 1 MB requests"
    assert_serves(shared_server)


def test_the_limit_is_the_setting(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_MAX_HEADER_BYTES": "4096", "POKEMON_RATE_LIMIT_PER_MIN": "0"})
    assert_refused(*exchange(server, request(headers=[("X-Big", "j" * 5 * KB)])), limit=4096)
    status, _, _, _ = exchange(server, request(headers=[("X-Big", "k" * 3 * KB)]))
    assert status.startswith(OK_LINE), status


@pytest.mark.parametrize("value", ["1000", "2000000", "16k"])
def test_a_bad_limit_stops_the_server_with_one_line(value: str) -> None:
    assert_refused_setting(run_server_once(POKEMON_MAX_HEADER_BYTES=value), "POKEMON_MAX_HEADER_BYTES", repr(value))
