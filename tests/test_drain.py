"""A stop signal drains the requests in flight: the server process answers them, then exits 0.

The request is kept in flight by the remote name backend: the fake model answers late and the service waits
for that first name (POKEMON_NAME_WAIT_MS), so the signal arrives while the answer is still being made.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from tests.support.fake_llm import FakeLLM
    from tests.support.server import ServerFactory, ServerProcess

MODEL_DELAY_MS = 3_000


def wait_for_line(server: ServerProcess, needle: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while needle not in server.log_path.read_text(encoding="utf-8"):
        assert time.monotonic() < deadline, (
            f"no log line with {needle} within {timeout} s:\n{server.log_path.read_text()}"
        )
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_request_in_flight_is_answered_before_the_process_exits(
    llm: FakeLLM, server_factory: ServerFactory, sig: signal.Signals
) -> None:
    llm.set("clean", names=["Drainling"], delay_ms=MODEL_DELAY_MS)
    server = server_factory(
        {
            "POKEMON_NAME_BACKEND": "remote",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_TIMEOUT": "30",
            "POKEMON_NAME_CONCURRENCY": "1",
            "POKEMON_NAME_POOL_SIZE": "1",
            "POKEMON_NAME_WAIT_MS": "20000",
            "POKEMON_RATE_LIMIT_PER_MIN": "0",
        }
    )

    def generate() -> httpx.Response:
        with server.client() as client:
            return client.get("/v1/generate", headers={"X-Request-ID": "in-flight-1"})

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(generate)
        wait_for_line(server, '"request_id":"in-flight-1"')  # the server has the request...
        assert not pending.done()  # ...and has not answered it
        server.process.send_signal(sig)
        response = pending.result(timeout=30)
        exit_code = server.process.wait(timeout=30)

    assert response.status_code == 200, response.text
    # The name the model was still making when the signal came: the request was served, not cut short.
    assert (response.json()["metadata"]["nameSource"], response.json()["metadata"]["name"]) == ("remote", "Drainling")
    assert exit_code == 0
    assert "Traceback" not in server.log_path.read_text(encoding="utf-8")
