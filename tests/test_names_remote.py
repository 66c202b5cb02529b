"""Remote names against a real OpenAI-compatible server process: the request, every bad answer, and the
service staying fast and whole when the model misbehaves."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from core.errors import NameServerError
from core.names.openai_client import MAX_RESPONSE_BYTES, OpenAINameClient
from core.names.prompts import PROMPTS
from tests.support.fake_llm import FakeLLM
from tests.support.ports import free_port
from tests.support.server import ServerFactory

NAMES = ["Aquaclaw", "Voltaran", "Mossquill", "Zephyrix", "Khra'gzathon"]


def fetch(base_url: str, **options: Any) -> str:
    async def run() -> str:
        client = OpenAINameClient(
            base_url=base_url,
            model=options.pop("model", "llama3.2:1b"),
            api_key=SecretStr(options.pop("api_key", "dummy")),
            timeout=options.pop("timeout", 2.0),
            **options,
        )
        try:
            return await client.fetch_name()
        finally:
            await client.aclose()

    return asyncio.run(run())


def reason_of(base_url: str, **options: Any) -> str:
    with pytest.raises(NameServerError) as caught:
        fetch(base_url, **options)
    return caught.value.reason


def test_the_request_is_what_the_contract_says(llm: FakeLLM) -> None:
    llm.set("clean", names=NAMES)
    assert fetch(llm.base_url, api_key="sk-test", max_tokens=30, temperature=0.7) == "Aquaclaw"
    fetch(llm.base_url)
    first, second = llm.requests()
    assert first["body"]["messages"][0] == second["body"]["messages"][0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == "Bearer sk-test"
    body = first["body"]
    assert body["model"] == "llama3.2:1b"
    assert body["max_tokens"] == 30
    assert body["temperature"] == 0.7
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system == {"role": "system", "content": PROMPTS["en"].system}
    assert user["role"] == "user" and user["content"].startswith("Invent one creature name. Theme: ")
    assert '{"name":"<name>"}' in system["content"]


def test_the_french_prompt_is_the_descriptions(llm: FakeLLM) -> None:
    fetch(llm.base_url, language="fr")
    system, user = llm.requests()[0]["body"]["messages"]
    assert system["content"] == 'Tu crées un nom de créature Pokémon. Réponds au format JSON: {"name":"<nom>"}'
    assert user["content"].startswith("Génère un seul nom.")


def test_themes_vary_between_calls(llm: FakeLLM) -> None:
    for _ in range(12):
        fetch(llm.base_url)
    themes = {request["body"]["messages"][1]["content"] for request in llm.requests()}
    assert len(themes) >= 4


@pytest.mark.parametrize(
    "mode", ["clean", "fenced", "prose", "extra_braces", "missing_brace", "single_quotes", "key_variant"]
)
def test_malformed_answers_still_give_the_name(llm: FakeLLM, mode: str) -> None:
    llm.set(mode, names=["Mossquill"])
    assert fetch(llm.base_url) == "Mossquill"


@pytest.mark.parametrize(
    ("mode", "options", "reason"),
    [
        ("placeholder", {}, "no_valid_name"),
        ("status", {"status": 500}, "status_500"),
        ("status", {"status": 429}, "status_429"),
        ("not_json", {}, "not_json"),
        ("no_choices", {}, "no_choices"),
        ("null_content", {}, "null_content"),
        ("raw", {"content": "I cannot help with that."}, "no_valid_name"),
        ("raw", {"content": '{"name": "name"}'}, "no_valid_name"),
        ("close", {}, "RemoteProtocolError"),
    ],
)
def test_bad_answers_are_failures_with_a_reason(llm: FakeLLM, mode: str, options: dict[str, Any], reason: str) -> None:
    llm.set(mode, **options)
    assert reason_of(llm.base_url) == reason


def test_a_server_refusing_response_format_is_asked_again_without_it(llm: FakeLLM) -> None:
    llm.set("status", status=400)
    assert reason_of(llm.base_url) == "status_400"
    first, second = llm.requests()
    assert "response_format" in first["body"]
    assert "response_format" not in second["body"]


def test_the_timeout_bounds_the_whole_call(llm: FakeLLM) -> None:
    llm.set("hang")
    began = time.monotonic()
    assert reason_of(llm.base_url, timeout=0.3) == "timeout"
    assert time.monotonic() - began < 1.5
    llm.set("clean", delay_ms=600)
    assert reason_of(llm.base_url, timeout=0.3) == "timeout"


def test_nobody_listening_is_a_connect_failure() -> None:
    assert reason_of(f"http://127.0.0.1:{free_port()}/v1") == "connect"


# --- Hostile answers: too big, a gzip bomb, a trickle ---


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting the bytes the client takes off the wire."""

    def __init__(self) -> None:
        self.received = 0
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        response.stream = CountingStream(response.stream, self)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class CountingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, counter: CountingTransport) -> None:
        self._inner = inner
        self._counter = counter

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._counter.received += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def hostile_fetch(base_url: str, **options: Any) -> tuple[str, float, int, int]:
    """The failure reason (or the name), the seconds it took, the bytes off the wire and the peak of memory
    Python allocated during the call."""
    transport = CountingTransport()
    tracemalloc.start()
    began = time.monotonic()
    try:
        outcome = fetch(base_url, transport=transport, **options)
    except NameServerError as exc:
        outcome = exc.reason
    finally:
        elapsed = time.monotonic() - began
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, elapsed, transport.received, peak


def test_a_huge_answer_is_refused_after_reading_the_cap(llm: FakeLLM) -> None:
    llm.set("huge", size=32 << 20)
    outcome, elapsed, received, peak = hostile_fetch(llm.base_url)
    assert outcome == "too_large"
    assert elapsed < 1.0
    assert received < MAX_RESPONSE_BYTES + (128 << 10)  # the cap and a network read or two, of 32 MiB sent
    assert peak < 4 << 20


def test_a_gzip_bomb_is_refused_without_inflating_it(llm: FakeLLM) -> None:
    llm.set("gzip_bomb")  # 100 MiB of answer in about 100 KiB
    hostile_fetch(llm.base_url)  # the fake builds its bomb once: not the client's time
    outcome, elapsed, received, peak = hostile_fetch(llm.base_url)
    assert outcome == "too_large"
    assert elapsed < 1.0
    assert received <= 200 << 10
    # httpx's own decoder would inflate a 64 KiB network read whole: about 64 MiB at once.
    assert peak < 4 << 20


def test_answers_under_the_cap_are_read_plain_or_compressed(llm: FakeLLM) -> None:
    llm.set("huge", size=MAX_RESPONSE_BYTES - 1000, names=["Mossquill"])  # parsed on a worker thread
    assert fetch(llm.base_url) == "Mossquill"
    llm.set("gzip_bomb", size=MAX_RESPONSE_BYTES, names=["Voltaran"])
    assert fetch(llm.base_url) == "Voltaran"
    llm.set("gzip_bomb", size=MAX_RESPONSE_BYTES + 1)
    assert reason_of(llm.base_url) == "too_large"


def test_a_smaller_cap_can_be_asked_for(llm: FakeLLM) -> None:
    llm.set("huge", size=10_000)
    assert reason_of(llm.base_url, max_response_bytes=5_000) == "too_large"
    assert fetch(llm.base_url, max_response_bytes=10_000) == "Aquaclaw"


def test_a_trickling_answer_ends_at_the_timeout(llm: FakeLLM) -> None:
    llm.set("trickle", interval_ms=20)  # each byte well within any read timeout, the whole answer far past it
    began = time.monotonic()
    assert reason_of(llm.base_url, timeout=0.5) == "timeout"
    assert 0.45 <= time.monotonic() - began < 1.0
    wait_for(lambda: llm.stats()["in_flight"] == 0)  # the fake saw the client leave


# --- The service with POKEMON_NAME_BACKEND=remote, as a process ---


def remote_settings(llm: FakeLLM, **extra: str) -> dict[str, str]:
    return {
        "POKEMON_NAME_BACKEND": "remote",
        "OPENAI_BASE_URL": llm.base_url,
        "POKEMON_RATE_LIMIT_PER_MIN": "0",
        "POKEMON_NAME_POOL_SIZE": "8",
        "POKEMON_NAME_CONCURRENCY": "2",
        **extra,
    }


def generate(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/generate", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json()["metadata"])


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_creatures_get_names_from_the_model(llm: FakeLLM, server_factory: ServerFactory) -> None:
    llm.set("clean", names=NAMES)
    server = server_factory(remote_settings(llm))
    with server.client() as client:
        wait_for(lambda: llm.stats()["chat_requests"] >= 8)
        served = [generate(client) for _ in range(5)]
        seeded = generate(client, seed=42)
        again = generate(client, seed=42)
        health = client.get("/health").json()
    assert {meta["nameSource"] for meta in served} == {"remote"}
    assert {meta["name"] for meta in served} <= set(NAMES)
    assert seeded["nameSource"] == "local" and seeded["name"] == again["name"]
    assert health["status"] == "ok" and health["nameBackend"] == "remote"
    assert llm.stats()["max_in_flight"] <= 2


def test_a_failing_model_never_fails_a_request(llm: FakeLLM, server_factory: ServerFactory) -> None:
    llm.set("status", status=500)
    server = server_factory(remote_settings(llm, POKEMON_NAME_BREAKER_FAILURES="3"))
    with server.client() as client:
        wait_for(lambda: client.get("/health").json()["status"] == "degraded")
        calls = llm.stats()["chat_requests"]
        began = time.monotonic()
        served = [generate(client) for _ in range(20)]
        elapsed = time.monotonic() - began
        health = client.get("/health").json()
    assert {meta["nameSource"] for meta in served} == {"local"}
    assert elapsed < 2.0
    assert health["components"]["names"]["status"] == "degraded"
    assert llm.stats()["chat_requests"] == calls  # the open breaker sends nothing more
    server.stop()
    events = [json.loads(line) for line in server.log_lines()]
    failed = [event["extra"] for event in events if event["message"] == "remote_name.failed"]
    assert failed and failed[0]["reason"] == "status_500" and "duration_ms" in failed[0]
    assert any(event["message"] == "remote_name.breaker" and event["extra"]["state"] == "open" for event in events)


def test_a_hanging_model_adds_no_latency_once_the_breaker_is_open(llm: FakeLLM, server_factory: ServerFactory) -> None:
    llm.set("hang")
    server = server_factory(remote_settings(llm, OPENAI_TIMEOUT="0.3", POKEMON_NAME_BREAKER_FAILURES="2"))
    with server.client() as client:
        wait_for(lambda: client.get("/health").json()["status"] == "degraded")
        began = time.monotonic()
        served = [generate(client) for _ in range(10)]
        assert time.monotonic() - began < 1.0
    assert {meta["nameSource"] for meta in served} == {"local"}


def test_the_breaker_recovers_when_the_model_comes_back(llm: FakeLLM, server_factory: ServerFactory) -> None:
    llm.set("status", status=503)
    server = server_factory(
        remote_settings(llm, POKEMON_NAME_BREAKER_FAILURES="2", POKEMON_NAME_BREAKER_COOLDOWN="0.5")
    )
    with server.client() as client:
        wait_for(lambda: client.get("/health").json()["status"] == "degraded")
        llm.set("clean", names=NAMES)
        wait_for(lambda: client.get("/health").json()["status"] == "ok")
        wait_for(lambda: generate(client)["nameSource"] == "remote")


def test_model_answers_are_logged_only_when_asked(llm: FakeLLM, server_factory: ServerFactory) -> None:
    llm.set("raw", content="Sorry, as an AI I cannot invent names today.")
    quiet = server_factory(remote_settings(llm))
    loud = server_factory(remote_settings(llm, LOG_REMOTE_CONTENT="1"))
    wait_for(lambda: llm.stats()["chat_requests"] >= 4)
    quiet.stop()
    loud.stop()
    assert "as an AI" not in quiet.log_path.read_text()
    assert "extract_name.failed" in quiet.log_path.read_text()
    logged = [json.loads(line) for line in loud.log_lines() if "extract_name.failed" in line]
    assert logged[0]["extra"]["content"] == "Sorry, as an AI I cannot invent names today."


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def latencies_ms(client: httpx.Client, count: int) -> list[float]:
    spent = []
    for _ in range(count):
        began = time.perf_counter()
        generate(client)
        spent.append((time.perf_counter() - began) * 1000)
    return sorted(spent)


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@pytest.mark.parametrize("mode", ["gzip_bomb", "huge"])
def test_a_hostile_model_neither_slows_nor_bloats_the_service(
    llm: FakeLLM, server_factory: ServerFactory, mode: str
) -> None:
    llm.set("clean", names=NAMES)
    # A breaker that stays closed, so the workers keep fetching hostile answers throughout.
    server = server_factory(remote_settings(llm, POKEMON_NAME_BREAKER_FAILURES="1000"))
    pid = server.process.pid
    with server.client() as client:
        wait_for(lambda: llm.stats()["chat_requests"] >= 8)
        latencies_ms(client, 20)  # warm-up
        baseline = latencies_ms(client, 200)

        llm.set(mode, size=32 << 20 if mode == "huge" else 0)
        hostile_from = llm.stats()["chat_requests"]
        # Requests take the names still pooled; once it is empty the workers fetch without pause.
        wait_for(lambda: bool(generate(client)) and llm.stats()["chat_requests"] >= hostile_from + 5)
        rss_early = rss_kib(pid)
        under_attack = latencies_ms(client, 200)
        wait_for(lambda: llm.stats()["chat_requests"] >= hostile_from + 55, timeout=30.0)
        rss_late = rss_kib(pid)
        hostile = llm.stats()["chat_requests"] - hostile_from
    server.stop()

    figures = (
        f"{mode}: {hostile} hostile answers; p50 {percentile(baseline, 0.5):.1f} -> "
        f"{percentile(under_attack, 0.5):.1f} ms, p99 {percentile(baseline, 0.99):.1f} -> "
        f"{percentile(under_attack, 0.99):.1f} ms; RSS {rss_early} -> {rss_late} KiB"
    )
    print(figures)
    assert percentile(under_attack, 0.5) < max(3 * percentile(baseline, 0.5), 10.0), figures
    assert percentile(under_attack, 0.99) < max(3 * percentile(baseline, 0.99), 50.0), figures
    assert rss_late - rss_early < 8 << 10, figures  # KiB: no growth per answer
    reasons = {json.loads(line)["extra"].get("reason") for line in server.log_lines() if "remote_name.failed" in line}
    assert reasons == {"too_large"}
