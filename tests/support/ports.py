"""A free TCP port on the loopback interface, for a child server to bind.

The one definition in the repository: the tests' server helpers and the benchmarks' harness (bench/harness.py)
both import it from here. It lives with the tests because bench/ already depends on tests.support (the fake
model server, the tiny pipeline) and the test suite should never depend on the benchmarks.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    # The port is released before the child binds it; another process could take it in between, which on a
    # loopback-only machine running our own processes has not been worth a retry loop.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])
