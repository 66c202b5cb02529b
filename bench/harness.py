"""Child processes for the benchmarks: a clean environment, CPU pinning, start, wait for health, stop by pid.

Ports come from `tests.support.ports.free_port`, the one definition the tests and the benchmarks share (its
module says why it lives with the tests). Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.environment import clean_environment
from tests.support.paths import REPO
from tests.support.ports import free_port

HOST = "127.0.0.1"
HEALTH_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 12.0  # uvicorn's graceful shutdown is 10 s; then SIGKILL


class BenchError(Exception):
    """The benchmark cannot run or produced nothing usable; the message is one line for the user."""


def base_env() -> dict[str, str]:
    # Inherited settings would make the run depend on the caller's shell; the servers get defaults instead.
    return clean_environment(PYTHONPATH=str(REPO))


def setting(text: str) -> tuple[str, str]:
    """An argparse type for `--env KEY=VALUE`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def require_cpus(server_cpu: int, wrk_cpu: int) -> None:
    available = os.sched_getaffinity(0)
    if server_cpu == wrk_cpu or not {server_cpu, wrk_cpu} <= available:
        raise BenchError(f"need two distinct available CPUs for --server-cpu/--wrk-cpu; available: {sorted(available)}")


def pin_to(cpu: int) -> Callable[[], None]:
    """A preexec_fn: the child is pinned before it execs, so every thread it starts inherits the CPU."""

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})

    return pin


def spawn(argv: Sequence[str], *, env: dict[str, str], log_path: Path, cpu: int | None) -> subprocess.Popen[bytes]:
    """A child in the repository with its output in `log_path`, pinned to `cpu` unless that is None."""
    with log_path.open("wb") as log_file:  # the child keeps its own descriptor
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            # preexec_fn is unsafe only with threads around; the benchmarks' own processes run none.
            preexec_fn=None if cpu is None else pin_to(cpu),
            start_new_session=True,  # a Ctrl-C reaches the benchmark, which then stops its children itself
        )


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (uvicorn drains and exits), then SIGKILL if it is still there after `timeout`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@dataclass
class Processes:
    """Every child a run started, so that its `finally` can stop each one by its own pid."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(
        self, argv: Sequence[str], *, cpu: int | None, env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        process = spawn(argv, env=env, log_path=log_path, cpu=cpu)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                stop(process)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    # http.client rather than urllib: urllib would honour an http_proxy variable and leave the machine.
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_healthy(process: subprocess.Popen[bytes], port: int, log_path: Path, name: str) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"the {name} server exited with status {process.returncode}; its log ends:\n{tail}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(port, "/health", timeout=1.0)
            if status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"the {name} server did not answer /health within {HEALTH_TIMEOUT_S:.0f} s")


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path


def start_server(
    processes: Processes,
    name: str,
    argv: Sequence[str],
    env: Callable[[int], dict[str, str]],
    *,
    scratch: Path,
    cpu: int | None,
) -> Server:
    """Starts `argv` on a free port (`env(port)` is its environment) and waits until /health answers."""
    port = free_port()
    log_path = scratch / f"{name}.log"
    process = processes.spawn(argv, cpu=cpu, env=env(port), log_path=log_path)
    wait_healthy(process, port, log_path, name)
    return Server(name, port, process, log_path)
