"""The fake OpenAI server itself, over real HTTP: if it lies, every test built on it proves nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.fake_llm import FakeLLM, start_fake_llm
from tests.support.paths import REPO

REQUEST: dict[str, Any] = {
    "model": "llama3.2:1b",
    "messages": [{"role": "system", "content": "Invent a creature."}, {"role": "user", "content": "One name."}],
    "max_tokens": 30,
    "temperature": 0.9,
    "response_format": {"type": "json_object"},
}


@pytest.fixture
def client(llm: FakeLLM) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=llm.base_url, timeout=5.0, trust_env=False) as http:
        yield http


def chat(http: httpx.Client, **overrides: Any) -> httpx.Response:
    return http.post("/chat/completions", json={**REQUEST, **overrides})


def content_of(response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.text
    content: str | None = response.json()["choices"][0]["message"]["content"]
    return content


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_models(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    assert response.json() == {"object": "list", "data": [{"id": "llama3.2:1b", "object": "model", "owned_by": "fake"}]}


def test_clean_completion_is_well_formed(client: httpx.Client) -> None:
    response = chat(client, model="some-other-model")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert body["model"] == "some-other-model"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": '{"name":"Aquaclaw"}'}, "finish_reason": "stop"}
    ]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_names_cycle_and_restart_on_control(llm: FakeLLM, client: httpx.Client) -> None:
    defaults = [json.loads(content_of(chat(client)) or "")["name"] for _ in range(21)]
    assert defaults[:2] == ["Aquaclaw", "Voltaran"]
    assert len(set(defaults[:20])) == 20
    assert defaults[20] == defaults[0]

    llm.set(names=["Alpha", "Beta"])
    assert [content_of(chat(client)) for _ in range(3)] == ['{"name":"Alpha"}', '{"name":"Beta"}', '{"name":"Alpha"}']


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("clean", '{"name":"Aquaclaw"}'),
        ("fenced", '```json\n{"name":"Aquaclaw"}\n```'),
        ("prose", 'Sure! Here is a name: {"name": "Aquaclaw"} Enjoy!'),
        ("extra_braces", '{{"name":"Aquaclaw"}}'),
        ("missing_brace", '{"name":"Aquaclaw"'),
        ("truncated", '{"name":"Aqua'),
        ("single_quotes", "{'name': 'Aquaclaw'}"),
        ("key_variant", '{"Name":"Aquaclaw"}'),
        ("placeholder", '{"name":"name"}'),
    ],
)
def test_content_modes(llm: FakeLLM, client: httpx.Client, mode: str, expected: str) -> None:
    llm.set(mode)
    assert content_of(chat(client)) == expected


def test_single_quotes_around_an_apostrophe(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("single_quotes", names=["Khra'gzathon"])
    assert content_of(chat(client)) == "{'name': \"Khra'gzathon\"}"


def test_raw_content_is_verbatim(llm: FakeLLM, client: httpx.Client) -> None:
    weird = '  {"name": "Ünïcode \\"quoted\\""}\n\t'
    llm.set("raw", content=weird)
    assert content_of(chat(client)) == weird
    assert content_of(chat(client)) == weird


@pytest.mark.parametrize(
    ("status", "kind"), [(401, "authentication_error"), (429, "rate_limit_error"), (503, "server_error")]
)
def test_status_mode(llm: FakeLLM, client: httpx.Client, status: int, kind: str) -> None:
    llm.set("status", status=status)
    response = chat(client)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert str(status) in error["message"]


def test_status_mode_defaults_to_500(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("status")
    assert chat(client).status_code == 500


def test_not_json(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("not_json")
    response = chat(client)
    assert response.status_code == 200
    assert response.text == "<html>oops</html>"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_no_choices_and_null_content(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("no_choices")
    response = chat(client)
    assert response.status_code == 200
    assert response.json()["choices"] == []

    llm.set("null_content")
    assert content_of(chat(client)) is None


def test_close_drops_the_connection_and_the_server_carries_on(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("close")
    with pytest.raises(httpx.RemoteProtocolError):
        chat(client)
    llm.set("clean")
    assert content_of(chat(client)) == '{"name":"Aquaclaw"}'


def test_huge_is_a_valid_completion_of_the_size_asked(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("huge", size=3 << 20)
    response = chat(client)
    assert len(response.content) == 3 << 20
    assert json.loads(content_of(response) or "") == {"name": "Aquaclaw"}


def test_huge_defaults_to_8_mib(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("huge")
    assert len(chat(client).content) == 8 << 20


def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("gzip_bomb", size=20 << 20)
    with client.stream("POST", "/chat/completions", json=REQUEST) as response:
        assert response.headers["content-encoding"] == "gzip"
        wire = b"".join(response.iter_raw())
    assert len(wire) < 100_000
    inflated = zlib.decompress(wire, 16 + zlib.MAX_WBITS)
    assert len(inflated) == 20 << 20
    assert json.loads(json.loads(inflated)["choices"][0]["message"]["content"]) == {"name": "Aquaclaw"}


def test_gzip_bomb_defaults_to_100_mib_in_about_100_kib(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("gzip_bomb")
    with client.stream("POST", "/chat/completions", json=REQUEST) as response:
        wire = b"".join(response.iter_raw())
    assert 50_000 < len(wire) < 200_000
    assert len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(wire)) == 100 << 20


def test_trickle_sends_one_byte_per_interval(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("trickle", interval_ms=20)
    began = time.monotonic()
    with client.stream("POST", "/chat/completions", json=REQUEST) as response:
        assert response.status_code == 200
        headers_after = time.monotonic() - began
        received = b""
        for chunk in response.iter_raw():
            received += chunk
            if len(received) >= 10:
                break
        elapsed = time.monotonic() - began
    assert headers_after < 0.5
    assert 0.15 <= elapsed < 2.0
    assert received[:10] == b'{"id": "ch'
    # The handler notices the client left and stops trickling.
    wait_for(lambda: llm.stats()["in_flight"] == 0)


def test_trickle_delivers_a_whole_completion_in_the_end(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("trickle", interval_ms=1)
    assert content_of(chat(client)) == '{"name":"Aquaclaw"}'


def test_request_log_records_the_exact_request(llm: FakeLLM, client: httpx.Client) -> None:
    chat(client, headers_ignored=None)  # an extra body field must be kept as sent
    client.post("/chat/completions?x=1", content=b"not json at all", headers={"Authorization": "Bearer sk-test"})
    client.get("/models")  # not a chat request: not logged

    first, second = llm.requests()
    assert first["path"] == "/v1/chat/completions"
    assert first["body"] == {**REQUEST, "headers_ignored": None}
    assert first["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in first["headers"])
    assert second["path"] == "/v1/chat/completions?x=1"
    assert second["body"] == "not json at all"
    assert second["headers"]["authorization"] == "Bearer sk-test"
    assert llm.stats()["chat_requests"] == 2


def test_non_object_body_is_a_400_in_content_modes(client: httpx.Client) -> None:
    response = client.post("/chat/completions", content=b"[1, 2]")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_reset_restores_defaults_and_clears_the_log(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("status", status=502, delay_ms=5)
    chat(client)
    llm.reset()
    assert llm.requests() == []
    assert llm.stats() == {"chat_requests": 0, "in_flight": 0, "max_in_flight": 0}
    assert content_of(chat(client)) == '{"name":"Aquaclaw"}'


def test_control_reports_and_validates(llm: FakeLLM) -> None:
    llm.set("fenced", delay_ms=7, names=["Solo"])
    with httpx.Client(base_url=llm.origin, trust_env=False) as http:
        assert http.get("/_control").json() == {
            "mode": "fenced",
            "delay_ms": 7,
            "status": 500,
            "names": ["Solo"],
            "content": None,
            "size": 0,
            "interval_ms": 100,
        }
        assert http.post("/_control", content=b"{nope").status_code == 400
        assert http.post("/_control", json={"mode": "clean", "colour": "red"}).status_code == 400
    bad: list[dict[str, Any]] = [
        {"mode": "nonsense"},
        {"mode": "raw"},
        {"mode": "status", "status": 200},
        {"mode": "clean", "delay_ms": -1},
        {"mode": "clean", "names": []},
        {"mode": "huge", "size": -1},
        {"mode": "trickle", "interval_ms": 0},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match="rejected"):
            llm.set(**kwargs)
    # A rejected control call leaves the previous behaviour in force.
    with httpx.Client(base_url=llm.origin, trust_env=False) as http:
        assert http.get("/_control").json()["mode"] == "fenced"


def test_unknown_paths_and_methods(llm: FakeLLM) -> None:
    with httpx.Client(base_url=llm.origin, trust_env=False) as http:
        missing = http.get("/v1/embeddings")
        assert missing.status_code == 404
        assert "error" in missing.json()
        assert http.post("/nowhere", json={"a": 1}).status_code == 404
        assert http.get("/v1/chat/completions").status_code == 405
    assert llm.stats()["chat_requests"] == 0


def test_delay_is_respected(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set(delay_ms=300)
    started = time.monotonic()
    assert content_of(chat(client)) == '{"name":"Aquaclaw"}'
    assert 0.29 <= time.monotonic() - started < 2.0


def test_concurrent_requests_are_counted(llm: FakeLLM) -> None:
    llm.set(delay_ms=300)
    parallel = 6

    def one(_: int) -> int:
        # A client each, so every request has its own connection, as independent callers would.
        with httpx.Client(base_url=llm.base_url, timeout=5.0, trust_env=False) as http:
            return chat(http).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        statuses = list(pool.map(one, range(parallel)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * parallel
    assert elapsed < 0.3 * parallel / 2, "the delays ran one after another"
    assert llm.stats() == {"chat_requests": parallel, "in_flight": 0, "max_in_flight": parallel}


def test_hang_blocks_nothing_else_and_ends_when_the_client_leaves(llm: FakeLLM, client: httpx.Client) -> None:
    llm.set("hang")
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=llm.base_url, timeout=1.0, trust_env=False) as patient:
        hung = pool.submit(chat, patient)
        wait_for(lambda: llm.stats()["in_flight"] == 1)
        llm.set("clean")
        assert content_of(chat(client)) == '{"name":"Aquaclaw"}'
        # Answered while the hanging request is still open: the hang holds its own thread only.
        assert not hung.done()
        with pytest.raises(httpx.ReadTimeout):
            hung.result(timeout=5)
    # The handler notices the closed connection and stops counting the request.
    wait_for(lambda: llm.stats()["in_flight"] == 0)
    assert llm.stats()["max_in_flight"] == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_releases_a_hanging_request_and_exits_cleanly(sig: signal.Signals) -> None:
    server = start_fake_llm()
    try:
        server.set("hang", delay_ms=0)
        with (
            ThreadPoolExecutor(1) as pool,
            httpx.Client(base_url=server.base_url, timeout=10.0, trust_env=False) as http,
        ):
            hung = pool.submit(chat, http)
            wait_for(lambda: server.stats()["in_flight"] == 1)
            started = time.monotonic()
            server.process.send_signal(sig)
            assert server.process.wait(timeout=3) == 0
            with pytest.raises(httpx.TransportError):
                hung.result(timeout=3)
            assert time.monotonic() - started < 2.0
    finally:
        assert server.stop() == 0


def test_only_loopback_hosts_are_accepted() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.support.fake_openai", "--host", "0.0.0.0", "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr
    assert "READY" not in result.stdout
