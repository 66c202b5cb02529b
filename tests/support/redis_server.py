"""Debian's `redis-server` as a child process on a free loopback port, and its fixtures.

`make test` installs the package (as it installs Chromium). Each server runs with no persistence (no RDB,
no AOF) in a temporary folder, binds 127.0.0.1 only, and is stopped by the test that started it, by its own
process id. `kill()` then `restart()` brings the same address back (empty, as a restarted cache would be),
which is what the outage tests need.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from tests.support.ports import LOOPBACK, free_port

REDIS_SERVER = "redis-server"


class RedisServerError(RuntimeError):
    """redis-server is missing, exited, or did not answer; the message says which (tests and benchmarks)."""


class RedisServer:
    def __init__(self, folder: Path, *, password: str | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{LOOPBACK}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        executable = shutil.which(REDIS_SERVER)
        if executable is None:
            raise RedisServerError("redis-server is not installed: `make test` installs Debian's redis-server package")
        command = [
            executable,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
            "--protected-mode",
            "yes",
        ]
        if self.password:
            command += ["--requirepass", self.password]
        log = (self.folder / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                raise RedisServerError(f"redis-server exited with {self.process.returncode}; see {self.folder}")
            if time.monotonic() > deadline:
                self.stop()
                raise RedisServerError("redis-server did not answer PING in time")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: the store vanishes mid-run, connections reset, nothing flushed."""
        self.stop(signal.SIGKILL)

    def restart(self) -> RedisServer:
        self.stop()
        return self.start()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def client(self) -> redis.Redis:
        """A synchronous redis-py client, for a test to look at (or tamper with) what the service stored."""
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def _answers_ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, stopped after it."""
    server = RedisServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()
