"""The fake OpenAI server (tests/support/fake_openai.py) as a child process, and the pytest fixtures around it.

`fake_llm` starts one server for the whole session; `llm` hands it to a test with the default behaviour and an
empty request log, so tests can share the process without seeing each other's settings.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO, Any, cast

import httpx
import pytest

from tests.support.paths import REPO


class FakeLLM:
    """A running fake server: its address, its control API, and the process to stop."""

    def __init__(self, process: subprocess.Popen[str], port: int, stderr: IO[str]) -> None:
        self.process = process
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.origin}/v1"
        self._stderr = stderr
        # trust_env=False: an HTTP(S)_PROXY in the environment must not route loopback control calls elsewhere.
        self._client = httpx.Client(base_url=self.origin, timeout=10.0, trust_env=False)

    def set(
        self,
        mode: str = "clean",
        *,
        delay_ms: int = 0,
        status: int | None = None,
        names: list[str] | None = None,
        content: str | None = None,
        size: int | None = None,
        interval_ms: int | None = None,
    ) -> None:
        """Replaces the whole behaviour for later chat requests and restarts the name cycle."""
        payload: dict[str, Any] = {"mode": mode, "delay_ms": delay_ms}
        if status is not None:
            payload["status"] = status
        if names is not None:
            payload["names"] = names
        if content is not None:
            payload["content"] = content
        if size is not None:
            payload["size"] = size
        if interval_ms is not None:
            payload["interval_ms"] = interval_ms
        response = self._client.post("/_control", json=payload)
        if response.status_code != 200:
            # The server's message says which field was wrong; raise_for_status would drop it.
            raise ValueError(f"fake LLM rejected {payload}: {response.text}")

    def reset(self) -> None:
        self._client.post("/_reset").raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        response = self._client.get("/_requests")
        response.raise_for_status()
        return cast(list[dict[str, Any]], response.json())

    def stats(self) -> dict[str, int]:
        response = self._client.get("/_stats")
        response.raise_for_status()
        return cast(dict[str, int], response.json())

    def stderr_text(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL if the server has not exited within `timeout`; returns the exit status."""
        self._client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()
        return int(self.process.returncode)


def start_fake_llm(timeout: float = 20.0) -> FakeLLM:
    """Starts `python -m tests.support.fake_openai --port 0` and waits for the port it prints."""
    # A file rather than a pipe: nobody reads stderr while the server runs, and a full pipe would stall it.
    stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_openai", "--host", "127.0.0.1", "--port", "0"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        port = _read_ready_port(process, timeout)
    except BaseException as exc:
        # Never leave a half-started server behind, whatever went wrong.
        process.kill()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        stderr.seek(0)
        details = stderr.read()
        stderr.close()
        if isinstance(exc, Exception):
            raise RuntimeError(f"fake LLM server did not start (exit {process.returncode}):\n{details}") from exc
        raise
    return FakeLLM(process, port, stderr)


def _read_ready_port(process: subprocess.Popen[str], timeout: float) -> int:
    stdout = process.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    # readline has no timeout of its own; a helper thread lets the wait give up. It ends when the pipe closes.
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    line = lines.get(timeout=timeout)
    word, _, port = line.strip().partition(" ")
    if word != "READY" or not port.isdigit():
        raise RuntimeError(f"unexpected first line {line!r}")
    return int(port)


# Named apart from their functions: `llm` takes the fixture `fake_llm` as a parameter, which would otherwise
# shadow the function of that name.
@pytest.fixture(scope="session", name="fake_llm")
def fake_llm_fixture() -> Iterator[FakeLLM]:
    server = start_fake_llm()
    yield server
    server.stop()


@pytest.fixture(name="llm")
def llm_fixture(fake_llm: FakeLLM) -> FakeLLM:
    fake_llm.reset()
    return fake_llm
