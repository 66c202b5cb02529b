"""HTTP at the edges, against the real server: HEAD probes, no redirect built from the Host header, and
JSON errors for every request the app itself answers."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support.server import ServerProcess

ERROR_KEYS = {"error"}
# Differ between any two answers, whatever the method.
PER_ANSWER_HEADERS = {"date", "x-request-id", "etag"}


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code


def raw_request(server: ServerProcess, target: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """One request written byte for byte: clients normalise `..` out of a path before sending it."""
    port = httpx.URL(server.base_url).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/"])
def test_head_answers_like_get_without_a_body(shared_server: ServerProcess, path: str) -> None:
    with shared_server.client() as client:
        got = client.get(path)
        head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(got.content)
    same = {name: value for name, value in got.headers.items() if name not in PER_ANSWER_HEADERS}
    assert {name: value for name, value in head.headers.items() if name not in PER_ANSWER_HEADERS} == same


def test_head_does_not_generate_a_creature(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        response = client.head("/v1/generate")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("path", ["/health/", "/v1/generate/", "/health/ready/"])
def test_no_redirect_echoes_the_host_header(shared_server: ServerProcess, path: str) -> None:
    with shared_server.client(headers={"Host": "evil.example"}) as client:
        response = client.get(path)
    assert "evil.example" not in response.headers.get("location", "")
    assert_json_error(response, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nothing/here", 404, "NOT_FOUND"),
        ("GET", "/static/secret.txt", 404, "NOT_FOUND"),
        ("POST", "/health", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/", 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/v1/generate", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/v1/generate?seed=abc", 422, "INVALID_REQUEST"),
        ("GET", "/v1/generate?seed=%ff%fe", 422, "INVALID_REQUEST"),
        ("GET", "/v1/generate?seed=1&seed=2&seed=-3", 422, "INVALID_REQUEST"),
    ],
)
def test_errors_the_app_answers_are_json(
    shared_server: ServerProcess, method: str, path: str, status: int, code: str
) -> None:
    with shared_server.client() as client:
        response = client.request(method, path)
    assert_json_error(response, status, code)
    if status == 405:
        allowed = {method.strip() for method in response.headers["allow"].split(",")}
        assert allowed == ({"GET"} if path == "/v1/generate" else {"GET", "HEAD"})


@pytest.mark.parametrize("target", ["/static/../x", "/static/..%2f..%2fetc%2fpasswd", "/static/%2e%2e/app.css"])
def test_a_path_out_of_static_is_a_json_404(shared_server: ServerProcess, target: str) -> None:
    status, body = raw_request(shared_server, target, host="evil.example")
    assert status == 404
    assert body.startswith(b'{"error":{"code":"NOT_FOUND"')
