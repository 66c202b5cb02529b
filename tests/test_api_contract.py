"""The HTTP contract, over real connections to `python -m handlers.server` on a loopback port."""

from __future__ import annotations

import base64
import json
import re
import signal
import ssl

import httpx
import pytest

from tests.support.paths import SHIPPED_IMAGES
from tests.support.server import ServerFactory, ServerProcess

ERROR_KEYS = {"error"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text and "/work" not in response.text and "site-packages" not in response.text
    return dict(body["error"])


# --- /v1/generate on the default configuration ---


def test_generate_returns_the_contract(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        response = client.get("/v1/generate")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"imageBase64", "metadata", "generatedAt"}
    png = base64.b64decode(body["imageBase64"], validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png in {path.read_bytes() for path in SHIPPED_IMAGES.glob("image_0[0-5].png")}
    metadata = body["metadata"]
    assert re.fullmatch(r"pkm_[A-Z0-9]{12}", metadata["id"])
    assert re.fullmatch(r"[A-Z][A-Za-z'\-]{2,19}", metadata["name"])
    assert metadata["rarity"] in {"F", "E", "D", "C", "B", "A", "S", "S+"}
    assert 0 <= metadata["seed"] < 2**63
    assert metadata["nameSource"] == "local"
    assert metadata["imageSource"] == "files"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["generatedAt"])
    assert "ratelimit-limit" not in response.headers  # rate limiting is off on this server
    assert re.fullmatch(r"[0-9a-f]{16}", response.headers["x-request-id"])


def test_a_seed_reproduces_the_creature(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        first = client.get("/v1/generate", params={"seed": 123456789}).json()
        second = client.get("/v1/generate", params={"seed": 123456789}).json()
        replay = client.get("/v1/generate", params={"seed": first["metadata"]["seed"]}).json()
        largest = client.get("/v1/generate", params={"seed": 2**63 - 1})
    for key in ("name", "rarity", "seed"):
        assert first["metadata"][key] == second["metadata"][key] == replay["metadata"][key]
    assert first["imageBase64"] == second["imageBase64"]
    assert first["metadata"]["id"] != second["metadata"]["id"]
    assert largest.status_code == 200


def test_creatures_vary(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        creatures = [client.get("/v1/generate").json() for _ in range(30)]
    assert len({c["metadata"]["name"] for c in creatures}) >= 28
    assert len({c["imageBase64"] for c in creatures}) >= 4
    assert len({c["metadata"]["rarity"] for c in creatures}) >= 3


@pytest.mark.parametrize(
    "seed", ["-1", "abc", "1.5", "1.0", "+5", "1_000", " 7", "", str(2**63), "9" * 40, "0x10", "1e3", "NaN", "٣"]
)
def test_bad_seeds_get_a_422_json_error(shared_server: ServerProcess, seed: str) -> None:
    with shared_server.client() as client:
        response = client.get("/v1/generate", params={"seed": seed})
    error = assert_error(response, 422, "INVALID_REQUEST")
    assert "seed" in error["message"]


def test_health(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        health = client.get("/health")
        ready = client.get("/health/ready")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["backend"] == "files"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["time"])
    assert ready.status_code == 200 and ready.json() == {"ready": True}


def test_unknown_routes_and_methods_get_json_errors(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        assert_error(client.get("/v2/nothing"), 404, "NOT_FOUND")
        response = client.post("/v1/generate")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET"


def test_request_ids_are_echoed_only_when_safe(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        kept = client.get("/health", headers={"X-Request-ID": "abc-123.X"})
        replaced = client.get("/health", headers={"X-Request-ID": "<script>"})
    assert kept.headers["x-request-id"] == "abc-123.X"
    assert replaced.headers["x-request-id"] != "<script>"


def test_openapi_documents_every_status(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    operation = schema["paths"]["/v1/generate"]["get"]
    assert set(operation["responses"]) == {"200", "401", "422", "429", "500", "503"}
    assert operation["responses"]["429"]["headers"]["Retry-After"]
    assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]
    seed = next(parameter for parameter in operation["parameters"] if parameter["name"] == "seed")
    assert seed["in"] == "query" and not seed.get("required", False)
    assert "/health" in schema["paths"] and "/health/ready" in schema["paths"]
    assert "securitySchemes" not in schema.get("components", {})  # auth is off on this server
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --- Auth ---


def test_bearer_auth(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_BEARER_TOKEN": "t0ken-for-tests", "POKEMON_RATE_LIMIT_PER_MIN": "0"})
    with server.client() as client:
        missing = client.get("/v1/generate")
        wrong = client.get("/v1/generate", headers={"Authorization": "Bearer nope"})
        basic = client.get("/v1/generate", headers={"Authorization": "Basic dDBrZW4="})
        good = client.get("/v1/generate", headers={"Authorization": "Bearer t0ken-for-tests"})
        health = client.get("/health")
        schema = client.get("/openapi.json").json()
    assert_error(missing, 401, "UNAUTHORIZED")
    assert missing.headers["www-authenticate"] == 'Bearer realm="pokemon"'
    assert_error(wrong, 401, "UNAUTHORIZED")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="pokemon", error="invalid_token"'
    assert basic.headers["www-authenticate"] == 'Bearer realm="pokemon"'
    assert good.status_code == 200
    assert health.status_code == 200
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schema["paths"]["/v1/generate"]["get"]["security"] == [{"bearer": []}]
    for response in (missing, wrong, good, health):
        assert "t0ken-for-tests" not in response.text


def test_the_token_never_reaches_the_logs(server_factory: ServerFactory) -> None:
    token = "zz-very-secret-token-zz"
    server = server_factory(
        {"POKEMON_BEARER_TOKEN": token, "LOG_LEVEL": "DEBUG", "LOG_REQUEST_BODY": "1", "LOG_IMAGE_B64": "1"}
    )
    with server.client() as client:
        client.get("/v1/generate", headers={"Authorization": f"Bearer {token}"})
        client.get("/v1/generate", headers={"Authorization": f"Bearer {token}x"})
        client.get("/v1/generate", headers={"Authorization": f"Basic {token}"})
    server.stop()
    text = server.log_path.read_text()
    assert "generate.success" in text and "auth.rejected" in text
    assert token not in text
    assert "Authorization" not in text and "authorization" not in text


# --- Rate limit ---


def test_rate_limit_headers_and_429(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "3"})
    with server.client() as client:
        responses = [client.get("/v1/generate") for _ in range(4)]
        health = client.get("/health")
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["ratelimit-remaining"] for r in responses[:3]] == ["2", "1", "0"]
    assert all(r.headers["ratelimit-limit"] == "3" for r in responses)
    limited = responses[-1]
    assert_error(limited, 429, "RATE_LIMITED")
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 20
    assert int(limited.headers["ratelimit-reset"]) >= retry_after
    assert health.status_code == 200 and "ratelimit-limit" not in health.headers


def test_refused_tokens_spend_no_budget(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "2", "POKEMON_BEARER_TOKEN": "right"})
    with server.client() as client:
        refused = [client.get("/v1/generate", headers={"Authorization": "Bearer wrong"}) for _ in range(5)]
        good = [client.get("/v1/generate", headers={"Authorization": "Bearer right"}) for _ in range(3)]
    assert {r.status_code for r in refused} == {401}
    assert [r.status_code for r in good] == [200, 200, 429]


def test_spoofed_forwarding_headers_earn_no_fresh_bucket(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "1"})
    with server.client() as client:
        first = client.get("/v1/generate")
        spoofed = [
            client.get(
                "/v1/generate", headers={"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=198.51.100.{n}"}
            )
            for n in range(3)
        ]
    assert first.status_code == 200
    assert {r.status_code for r in spoofed} == {429}


def test_trusted_proxies_give_each_forwarded_client_a_bucket(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "1", "POKEMON_TRUSTED_PROXIES": "127.0.0.1/32"})
    with server.client() as client:
        a1 = client.get("/v1/generate", headers={"X-Forwarded-For": "203.0.113.1"})
        b1 = client.get("/v1/generate", headers={"X-Forwarded-For": "203.0.113.2"})
        a2 = client.get("/v1/generate", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.1"})
    assert (a1.status_code, b1.status_code, a2.status_code) == (200, 200, 429)
    server.stop()
    clients = {
        json.loads(line)["extra"].get("client")
        for line in server.log_lines()
        if '"http.request"' in line and "/v1/generate" in line
    }
    assert clients == {"203.0.113.1", "203.0.113.2"}


# --- Logging through the real process ---


def test_json_log_lines_and_events(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        request_id = client.get("/v1/generate", headers={"X-Request-ID": "trace-me-1"}).headers["x-request-id"]
    shared_server.stop()  # flushes the log writer
    entries = [json.loads(line) for line in shared_server.log_lines()]
    assert all(set(entry) >= {"ts", "level", "logger", "message", "extra"} for entry in entries)
    events = [entry["message"] for entry in entries]
    assert events[0] == "startup.config"
    assert events.count("startup.tls_disabled") == 1
    traced = [entry for entry in entries if entry.get("request_id") == request_id]
    assert [entry["message"] for entry in traced] == ["http.request", "generate.success", "http.response"]
    success = traced[1]["extra"]
    assert set(success) >= {"id", "name", "rarity", "seed", "imageBackend", "nameSource", "duration_ms"}
    assert "imageBase64" not in success
    response = traced[2]["extra"]
    assert response["status"] == 200 and response["duration_ms"] >= 0 and response["client"] == "127.0.0.1"
    assert "shutdown.complete" in events


def test_text_logs_and_image_logging(server_factory: ServerFactory) -> None:
    server = server_factory({"LOG_JSON": "0", "LOG_IMAGE_B64": "1"})
    with server.client() as client:
        image = client.get("/v1/generate").json()["imageBase64"]
    server.stop()
    lines = server.log_lines()
    success = next(line for line in lines if " generate.success " in line)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO +pokemon generate\.success ", success)
    assert re.search('imageBase64="?' + re.escape(image), success)  # quoted when base64 padding adds "="
    assert not any(line.startswith("{") for line in lines)


# --- The server process ---


def test_https_when_certificates_exist(server_factory: ServerFactory) -> None:
    server = server_factory(tls=True)
    assert server.base_url.startswith("https://")
    with server.client() as client:
        assert client.get("/v1/generate").status_code == 200
    with httpx.Client(verify=ssl.create_default_context()) as strict, pytest.raises(httpx.ConnectError):
        strict.get(server.base_url + "/health")  # self-signed: refused without the dev cert
    server.stop()
    assert "startup.tls_disabled" not in server.log_path.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_shuts_down_gracefully(server_factory: ServerFactory, sig: signal.Signals) -> None:
    server = server_factory()
    with server.client() as client:
        assert client.get("/v1/generate").status_code == 200
    assert server.stop(sig) == 0
    assert "Traceback" not in server.log_path.read_text()
    events = [json.loads(line)["message"] for line in server.log_lines()]
    assert "shutdown.complete" in events
    assert events.index("shutdown.complete") < events.index("Application shutdown complete.")


def test_request_bodies_are_logged_only_when_asked(server_factory: ServerFactory) -> None:
    quiet = server_factory()
    verbose = server_factory({"LOG_REQUEST_BODY": "1"})
    for server in (quiet, verbose):
        with server.client() as client:
            response = client.request("GET", "/health", content=b'{"note":"hello body"}')
        assert response.status_code == 200
        server.stop()
    assert "hello body" not in quiet.log_path.read_text()
    logged = [
        json.loads(line)["extra"] for line in verbose.log_lines() if '"http.request"' in line and "/health" in line
    ]
    assert logged[-1]["body"] == '{"note":"hello body"}'
