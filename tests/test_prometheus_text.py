"""`PrometheusMetrics` counts in plain numbers and imports prometheus-client only to write `/metrics`: its text
must be the very text prometheus-client's own Counter, Histogram and Gauge write for the same observations."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.metrics import BATCH_BUCKETS, LATENCY_BUCKETS, PrometheusMetrics
from tests.support.paths import REPO

ROUTES = ["/v1/generate", "/health", "other"]
SECONDS = st.one_of(
    st.sampled_from([0.0, 0.0005, 0.001, 10.0, 10.5, -1.0, float("inf"), float("nan")]),
    st.floats(min_value=0, max_value=20, allow_nan=False),
)
EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.sampled_from(ROUTES), st.sampled_from([200, 401, 404, 429, 503]), SECONDS),
        st.tuples(st.just("generation"), st.sampled_from(["files", "sdxl"]), SECONDS),
        st.tuples(st.just("name_served"), st.sampled_from(["local", "remote"])),
        st.tuples(st.just("rate_limited")),
        st.tuples(st.just("batch"), st.integers(min_value=1, max_value=100)),
    ),
    max_size=40,
)


class Reference:
    """The sink as prometheus-client's own metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labelled: dict[str, Any] = {"registry": self.registry}
        self.requests = Counter(
            "pokemon_http_requests", "HTTP requests by route and status", ["route", "status"], **labelled
        )
        self.latency = Histogram(
            "pokemon_http_request_seconds", "HTTP request duration", ["route"], buckets=LATENCY_BUCKETS, **labelled
        )
        self.generation_seconds = Histogram(
            "pokemon_generation_seconds",
            "Time to generate one creature, by image backend",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            **labelled,
        )
        self.names = Counter("pokemon_names", "Names served, by source", ["source"], **labelled)
        self.limited = Counter("pokemon_rate_limited_requests", "Requests refused with 429", **labelled)
        self.batches = Histogram("pokemon_batch_size", "Images per pipeline call", buckets=BATCH_BUCKETS, **labelled)
        self.queue = Gauge("pokemon_queue_depth", "Requests waiting for the image pipeline", **labelled)
        self.queue.set_function(lambda: 3.0)

    def request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def generation(self, backend: str, seconds: float) -> None:
        self.generation_seconds.labels(backend).observe(seconds)

    def name_served(self, source: str) -> None:
        self.names.labels(source).inc()

    def rate_limited(self) -> None:
        self.limited.inc()

    def batch(self, size: int) -> None:
        self.batches.observe(size)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def without_creation_times(text: str) -> str:
    # When each series was first seen differs by microseconds between the two; the rest must not differ at all.
    return re.sub(r"^(\w+_created(\{[^}]*\})?) \S+$", r"\1 T", text, flags=re.MULTILINE)


@given(EVENTS)
def test_the_text_is_prometheus_clients_own(events: list[tuple[Any, ...]]) -> None:
    sink, reference = PrometheusMetrics(), Reference()
    sink.watch_queue(lambda: 3)
    for name, *arguments in events:
        getattr(sink, name)(*arguments)
        getattr(reference, name)(*arguments)
    body, content_type = sink.exposition()
    assert without_creation_times(body.decode()) == without_creation_times(reference.text())
    assert content_type.startswith("text/plain")


def test_creation_times_are_when_a_series_was_first_seen() -> None:
    sink = PrometheusMetrics()
    sink.request("/health", 200, 0.001)
    text = sink.exposition()[0].decode()
    created = re.search(r'^pokemon_http_requests_created\{route="/health",status="200"\} (\S+)$', text, re.MULTILINE)
    assert created is not None
    assert float(created.group(1)) > 1.7e9


def test_recording_imports_no_prometheus_client() -> None:
    script = (
        "import sys\nfrom core.metrics import PrometheusMetrics\nsink = PrometheusMetrics()\n"
        "sink.request('/health', 200, 0.01); sink.generation('files', 0.001); sink.name_served('local')\n"
        "sink.rate_limited(); sink.batch(2)\nassert 'prometheus_client' not in sys.modules\n"
        "sink.exposition()\nassert 'prometheus_client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=REPO, check=True, timeout=60)
