"""Attacks on the logs, made against the real server process: forged lines and leaked secrets.

A client writes the path, the query and several headers, and (through a model) the names; none of that may
split a line, colour a terminal, or carry a secret into the log file.
"""

from __future__ import annotations

import json
import re
import socket
import time
from urllib.parse import quote, urlsplit

import pytest

from tests.support.cli import run_cli
from tests.support.fake_llm import FakeLLM
from tests.support.ports import free_port
from tests.support.server import ServerFactory, ServerProcess, assert_refused_setting, run_server_once

TOKEN = "tok-Zq8LmN3pX7vR2sW5"
BASE_URL_PASSWORD = "pw-S3cretUrlPass"
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) +\S+ \S+")
FORGED_JSON = '{"ts":"2025-01-01T00:00:00Z","level":"INFO","logger":"pokemon","message":"forged.event","extra":{}}'
FORGED_TEXT = "2025-01-01T00:00:00Z INFO    pokemon forged.event user=admin"
# Every character that ends a line for `str.splitlines()`, and a terminal's colour escape.
BREAKERS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x1b[31m\x7f\x9b"


def send_raw(server: ServerProcess, request: bytes) -> bytes:
    """One HTTP/1.1 exchange written byte for byte: httpx refuses to send what an attacker would."""
    address = urlsplit(server.base_url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def get(server: ServerProcess, target: str, *headers: bytes) -> bytes:
    lines = [f"GET {target} HTTP/1.1".encode(), b"Host: localhost", *headers, b"Connection: close", b"", b""]
    return send_raw(server, b"\r\n".join(lines))


def stopped_log(server: ServerProcess) -> str:
    server.stop()  # the writer thread flushes on exit: every line is in the file now
    return server.log_path.read_text(encoding="utf-8")


def events(text: str, *, json_lines: bool) -> list[tuple[str, str | None]]:
    """(event, request id) per line, asserting that each line is one whole line of the format."""
    lines = text.splitlines()
    assert len(lines) == text.count("\n"), "a line holds a character that splitlines() splits on"
    found: list[tuple[str, str | None]] = []
    for line in lines:
        if json_lines:
            entry = json.loads(line)
            assert isinstance(entry, dict)
            found.append((entry["message"], entry.get("request_id")))
        else:
            assert TEXT_LINE.match(line), line
            request_id = re.search(r" request_id=(\S+)", line)
            found.append((line.split()[3], request_id.group(1) if request_id else None))
    return found


@pytest.mark.parametrize("log_json", ["1", "0"])
def test_a_client_cannot_forge_a_line(server_factory: ServerFactory, log_json: str) -> None:
    server = server_factory({"LOG_JSON": log_json, "POKEMON_TRUSTED_PROXIES": "127.0.0.1"})
    json_lines = log_json == "1"
    # The path is decoded by the server, so every character arrives; the query is logged as sent.
    path = "/" + quote(f"\r\n{FORGED_JSON}\n{FORGED_TEXT}{BREAKERS}", safe="")
    assert b" 404 " in get(server, path, b"X-Request-ID: attack-path")
    query = quote(f"\r\n{FORGED_TEXT}\u2028\x85\x1b[31m", safe="")
    assert b" 200 " in get(server, f"/health?q={query}&next=1", b"X-Request-ID: attack-query")
    # Header values may carry any byte from 0x80 up: NEL itself, and U+2028 / U+2029 as UTF-8.
    breaking_bytes = b"\x85\xe2\x80\xa8\xe2\x80\xa9\x9b"
    assert b" 200 " in get(
        server,
        "/health",
        b"X-Request-ID: attack-headers",
        b"X-Forwarded-For: 203.0.113.9, forged" + breaking_bytes + FORGED_TEXT.encode(),
        b"User-Agent: agent" + breaking_bytes,
    )
    text = stopped_log(server)

    seen = events(text, json_lines=json_lines)
    assert ("forged.event", None) not in seen and all(event != "forged.event" for event, _ in seen)
    by_request = {
        request_id: [event for event, owner in seen if owner == request_id]
        for request_id in ("attack-path", "attack-query", "attack-headers")
    }
    assert by_request == {
        "attack-path": ["http.request", "http.error", "http.response"],
        "attack-query": ["http.request", "http.response"],
        "attack-headers": ["http.request", "http.response"],
    }
    for raw in ("\x1b", "\x85", "\x7f", "\x9b", "\u2028", "\u2029", "\r"):
        assert raw not in text
    if not json_lines:
        request_line = next(line for line in text.splitlines() if "request_id=attack-path" in line)
        assert 'path="/\\r\\n{\\"ts\\"' in request_line
        assert "\\u2028\\u2029\\x1b[31m\\x7f\\x9b" in request_line


@pytest.mark.parametrize("log_json", ["1", "0"])
def test_a_model_cannot_forge_a_line(server_factory: ServerFactory, llm: FakeLLM, log_json: str) -> None:
    # The raw answer is logged (LOG_REMOTE_CONTENT=1) when no name can be read from it: the worst case.
    llm.set("raw", content=f'{{"name":"Evil\\r\\n{FORGED_TEXT}"}}\n{FORGED_JSON}{BREAKERS}')
    server = server_factory(
        {
            "LOG_JSON": log_json,
            "POKEMON_NAME_BACKEND": "remote",
            "OPENAI_BASE_URL": llm.base_url,
            "LOG_REMOTE_CONTENT": "1",
            "POKEMON_RATE_LIMIT_PER_MIN": "0",
        }
    )
    with server.client() as client:
        names = {client.get("/v1/generate").json()["metadata"]["name"] for _ in range(3)}
    deadline = time.monotonic() + 10
    while "extract_name.failed" not in server.log_path.read_text(encoding="utf-8") and time.monotonic() < deadline:
        time.sleep(0.05)
    text = stopped_log(server)

    seen = [event for event, _ in events(text, json_lines=log_json == "1")]
    assert "extract_name.failed" in seen
    assert "forged.event" not in seen
    assert all(name.isprintable() and "forged" not in name for name in names)
    for raw in ("\x1b", "\x85", "\u2028", "\r"):
        assert raw not in text


def test_secrets_sent_by_a_client_never_reach_the_log(server_factory: ServerFactory) -> None:
    server = server_factory(
        {
            "POKEMON_BEARER_TOKEN": TOKEN,
            "POKEMON_TRUSTED_PROXIES": "127.0.0.1",
            "POKEMON_RATE_LIMIT_PER_MIN": "0",
            "OPENAI_BASE_URL": f"http://svc-user:{BASE_URL_PASSWORD}@127.0.0.1:9/v1",
        }
    )
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    credentials = "access_token=at-111&%61ccess_token=at-222&API-KEY=ak-333&Client_Secret=cs-444&sig=sg-555"
    with server.client() as client:
        # Credential-like parameters, however their names are written.
        assert client.get(f"/v1/generate?{credentials}&seed=7", headers=bearer).status_code == 200
        # The token itself, under innocent names and places.
        assert client.get("/v1/generate", params={"q": TOKEN, "seed": "8"}, headers=bearer).status_code == 200
        assert client.get(f"/{TOKEN}").status_code == 404
        encoded = "".join(f"%{byte:02X}" for byte in TOKEN.encode())
        assert client.get(f"/health?q={encoded}").status_code == 200
        echoed = client.get("/health", headers={"X-Request-ID": TOKEN}).headers["X-Request-ID"]
        assert TOKEN not in echoed
        assert TOKEN not in client.get("/health", headers={"X-Request-ID": f"req-{TOKEN}-1"}).headers["X-Request-ID"]
        assert client.get("/health", headers={"X-Forwarded-For": TOKEN}).status_code == 200
        assert client.get("/health", headers={"X-Request-ID": "plain-id-1"}).headers["X-Request-ID"] == "plain-id-1"
    text = stopped_log(server)

    assert TOKEN not in text
    assert encoded not in text
    for value in ("at-111", "at-222", "ak-333", "cs-444", "sg-555", BASE_URL_PASSWORD):
        assert value not in text
    lines = [json.loads(line) for line in text.splitlines()]
    queries = [line["extra"].get("query") for line in lines if line["message"] == "http.request"]
    assert "access_token=***&%61ccess_token=***&API-KEY=***&Client_Secret=***&sig=***&seed=7" in queries
    assert "q=***&seed=8" in queries
    assert f"q={encoded}" not in queries and "q=***" in queries
    settings = next(line["extra"]["settings"] for line in lines if line["message"] == "startup.config")
    assert settings["OPENAI_BASE_URL"] == "http://svc-user:***@127.0.0.1:9/v1"
    assert any(line["extra"].get("path") == "/***" for line in lines)
    assert any(line.get("request_id") == "plain-id-1" for line in lines)


def test_a_bad_base_url_is_refused_without_its_password() -> None:
    result = run_server_once(OPENAI_BASE_URL=f"ftp://svc-user:{BASE_URL_PASSWORD}@llm.internal/v1")
    assert_refused_setting(result, "OPENAI_BASE_URL", "ftp://svc-user:***@llm.internal/v1")
    assert BASE_URL_PASSWORD not in result.stdout + result.stderr


def test_the_command_line_never_prints_a_url_password() -> None:
    url = f"http://svc-user:{BASE_URL_PASSWORD}@127.0.0.1:{free_port()}"
    for arguments in (["generate", "--url", url], ["generate", "--url", url.replace("http", "gopher")]):
        result = run_cli(*arguments)
        assert result.returncode != 0
        assert "svc-user:***@127.0.0.1" in result.stderr
        assert BASE_URL_PASSWORD not in result.stdout + result.stderr
