"""Metrics: Prometheus text from the server process, CloudWatch EMF through Powertools for Lambda."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest

from core.metrics import PowertoolsMetrics, PrometheusMetrics
from handlers.routes import GENERATE_PATH, METRICS_PATH, route_label
from tests.support.redis_server import RedisServer
from tests.support.server import ServerFactory


def sample(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if selector else "") + r" ([0-9.e+-]+)"
    match = re.search(pattern, text)
    assert match, f"{name} {labels} not in metrics"
    return float(match.group(1))


def test_the_server_exports_prometheus_metrics(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "3"})
    with server.client() as client:
        statuses = [client.get("/v1/generate").status_code for _ in range(4)]
        client.get("/health")
        client.get("/no/such/path/123")
        response = client.get("/metrics")
    assert statuses == [200, 200, 200, 429]
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "pokemon_http_requests_total", route="/v1/generate", status="200") == 3
    assert sample(text, "pokemon_http_requests_total", route="/v1/generate", status="429") == 1
    assert sample(text, "pokemon_http_requests_total", route="other", status="404") == 1
    assert sample(text, "pokemon_rate_limited_requests_total") == 1
    assert sample(text, "pokemon_names_total", source="local") == 3
    assert sample(text, "pokemon_generation_seconds_count", backend="files") == 3
    assert sample(text, "pokemon_http_request_seconds_count", route="/v1/generate") == 4
    assert sample(text, "pokemon_queue_depth") == 0
    assert "/no/such/path" not in text  # unknown paths never become label values


def test_metrics_stay_out_of_the_api_document(server_factory: ServerFactory) -> None:
    server = server_factory()
    with server.client() as client:
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_routes_are_bounded() -> None:
    assert route_label("/v1/generate") == "/v1/generate"
    assert route_label("/v1/generate/../../etc") == "other"


def test_powertools_metrics_write_embedded_metric_format(capsys: pytest.CaptureFixture[str]) -> None:
    sink = PowertoolsMetrics(namespace="PokemonTest")
    sink.client.clear_metrics()  # Powertools keeps one metric set per process, shared by its clients
    sink.request("/v1/generate", 200, 0.004)
    sink.generation("files", 0.001)
    sink.name_served("remote")
    sink.rate_limited()
    sink.batch(4)
    sink.client.flush_metrics()
    document = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "PokemonTest"
    names = {metric["Name"] for metric in directive["Metrics"]}
    assert {
        "Status2xx",
        "RequestLatency",
        "GenerationLatency_files",
        "Names_remote",
        "RateLimited",
        "BatchSize",
    } <= names
    assert document["Status2xx"] in (1.0, [1.0]) and document["service"] == "pokemon"
    assert document["BatchSize"] in (4.0, [4.0])


def test_prometheus_sink_in_isolation() -> None:
    sink = PrometheusMetrics()
    sink.watch_queue(lambda: 7)
    sink.batch(3)
    body, content_type = sink.exposition()
    assert "text/plain" in content_type
    text = body.decode()
    assert sample(text, "pokemon_queue_depth") == 7
    assert sample(text, "pokemon_batch_size_count") == 1


def test_components_are_exported_as_what_health_says() -> None:
    sink = PrometheusMetrics()
    states = {"images": True, "names": False}
    sink.watch_components(lambda: states)
    text = sink.exposition()[0].decode()
    assert sample(text, "pokemon_component_ok", component="images") == 1
    assert sample(text, "pokemon_component_ok", component="names") == 0
    states["names"] = True  # read when scraped, not when registered
    assert sample(sink.exposition()[0].decode(), "pokemon_component_ok", component="names") == 1


def test_a_redis_outage_shows_in_the_metrics_until_it_is_over(
    server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    server = server_factory(
        {
            "POKEMON_REDIS_URL": redis_server.url,
            "POKEMON_REDIS_TIMEOUT_MS": "200",
            "POKEMON_REDIS_BREAKER_FAILURES": "1",
            "POKEMON_REDIS_BREAKER_COOLDOWN": "0.3",
        }
    )

    def scrape() -> str:
        with server.client() as client:
            client.get(GENERATE_PATH)  # the limiter's call is what notices Redis
            return client.get(METRICS_PATH).text

    def redis_ok() -> float:
        return sample(scrape(), "pokemon_component_ok", component="redis")

    text = scrape()
    assert redis_ok() == 1
    assert {"images", "names", "rateLimit"} <= set(re.findall(r'pokemon_component_ok\{component="(\w+)"\}', text))
    redis_server.kill()
    assert wait_until(lambda: redis_ok() == 0)
    assert sample(scrape(), "pokemon_component_ok", component="images") == 1
    redis_server.start()
    assert wait_until(lambda: redis_ok() == 1)


def wait_until(condition: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
