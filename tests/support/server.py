"""The service as a real child process (`python -m handlers.server`) on a free loopback port, and its fixtures.

`server_factory` starts servers for one test and stops them after it; `shared_server` is one default server per
test module, for read-only tests. Both are registered as a pytest plugin by tests/conftest.py.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.environment import clean_environment
from tests.support.paths import REPO, SHIPPED_IMAGES
from tests.support.ports import LOOPBACK, free_port
from tests.support.python_child import run_python


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    base_url: str
    log_path: Path
    verify: ssl.SSLContext | bool = False
    _stopped: bool = field(default=False, init=False)

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=self.verify, timeout=10.0, **kwargs)  # type: ignore[arg-type]

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8").splitlines()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._stopped = True
        return int(self.process.returncode)


def start_server(
    tmp_path: Path, env: Mapping[str, str] | None = None, *, tls: bool = False, ready_timeout: float = 30.0
) -> ServerProcess:
    """`python -m handlers.server` as a child process; waits until /health answers."""
    port = free_port()
    certs = tmp_path / "certs"
    settings = {
        "POKEMON_HOST": "127.0.0.1",
        "POKEMON_PORT": str(port),
        "POKEMON_IMAGES_DIR": str(SHIPPED_IMAGES),
        "POKEMON_TLS_CERT": str(certs / "cert.pem"),
        "POKEMON_TLS_KEY": str(certs / "key.pem"),
        **(env or {}),
    }
    if tls:
        from handlers.certs import write_dev_certificate

        write_dev_certificate(Path(settings["POKEMON_TLS_CERT"]), Path(settings["POKEMON_TLS_KEY"]))
    log_path = tmp_path / f"server-{port}.log"
    log_file = log_path.open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "handlers.server"],
        cwd=REPO,
        env=clean_environment(**settings),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log_file.close()
    scheme = "https" if tls else "http"
    verify = ssl.create_default_context(cafile=settings["POKEMON_TLS_CERT"]) if tls else False
    server = ServerProcess(process, f"{scheme}://127.0.0.1:{port}", log_path, verify=verify)
    try:
        _wait_until_healthy(server, ready_timeout)
    except BaseException:
        server.stop(signal.SIGKILL)  # never leave a half-started server behind
        raise
    return server


def _wait_until_healthy(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log_path.read_text()}")
        try:
            with server.client() as client:
                if client.get("/health").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not answer within {timeout}s:\n{server.log_path.read_text()}")


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    started: list[ServerProcess] = []

    def factory(env: Mapping[str, str] | None = None, *, tls: bool = False) -> ServerProcess:
        server = start_server(tmp_path, env, tls=tls)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One default server for read-only contract tests (rate limit lifted so tests don't interfere)."""
    server = start_server(tmp_path_factory.mktemp("shared"), {"POKEMON_RATE_LIMIT_PER_MIN": "0"})
    yield server
    server.stop()


def run_server_once(**settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m handlers.server` with `settings` on a free loopback port, run to its end: for the settings
    it must refuse (it exits at once); never call it with settings it accepts."""
    env = {
        "POKEMON_HOST": LOOPBACK,
        "POKEMON_PORT": str(free_port()),
        "POKEMON_IMAGES_DIR": str(SHIPPED_IMAGES),
        **settings,
    }
    return run_python("-m", "handlers.server", cwd=REPO, timeout=30, **env)


def assert_refused_setting(result: subprocess.CompletedProcess[str], variable: str, *mentions: str) -> str:
    """Exit 2, no traceback, exactly one line on stderr naming `variable` (and each of `mentions`)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith(f"pokemon: invalid setting {variable}="), line
    for mention in mentions:
        assert mention in line, line
    return line
