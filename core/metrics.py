"""Service metrics: one small interface, recorded by the core and the HTTP layer, exported by the entry point.

The server exports Prometheus text at `/metrics` (`PrometheusMetrics`); Lambda writes CloudWatch EMF
through Powertools (`PowertoolsMetrics`, flushed per invocation); tests and tools run with `NullMetrics`.
The sink is chosen by the entry point and handed to what records into it (the service, the middleware,
the image backend): nothing looks it up from a global, so nothing depends on import or build order.
Label values are bounded (routes are the service's own, statuses are HTTP codes), so no caller can grow
the series without limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

ROUTES = frozenset({"/v1/generate", "/health", "/health/ready", "/metrics", "/", "/openapi.json", "/docs"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"


class Metrics(Protocol):
    def request(self, route: str, status: int, seconds: float) -> None: ...

    def generation(self, backend: str, seconds: float) -> None: ...

    def name_served(self, source: str) -> None: ...

    def rate_limited(self) -> None: ...

    def batch(self, size: int) -> None: ...


class NullMetrics:
    def request(self, route: str, status: int, seconds: float) -> None:
        return None

    def generation(self, backend: str, seconds: float) -> None:
        return None

    def name_served(self, source: str) -> None:
        return None

    def rate_limited(self) -> None:
        return None

    def batch(self, size: int) -> None:
        return None


class PrometheusMetrics:
    """prometheus-client collectors in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self._requests = Counter(
            "pokemon_http_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self._latency = Histogram(
            "pokemon_http_request_seconds",
            "HTTP request duration",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._generation = Histogram(
            "pokemon_generation_seconds",
            "Time to generate one creature, by image backend",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._names = Counter("pokemon_names", "Names served, by source", ["source"], registry=self.registry)
        self._limited = Counter("pokemon_rate_limited_requests", "Requests refused with 429", registry=self.registry)
        self._batches = Histogram(
            "pokemon_batch_size",
            "Images per pipeline call",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self._queue_depth: Callable[[], int] = lambda: 0
        self._queue = Gauge("pokemon_queue_depth", "Requests waiting for the image pipeline", registry=self.registry)
        self._queue.set_function(lambda: float(self._queue_depth()))
        # Label children cached: `.labels()` costs a lock and a dict build per call on the hot path.
        self._request_children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._generation_children: dict[str, Any] = {}
        self._name_children: dict[str, Any] = {}

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self._queue_depth = depth

    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self._requests.labels(route, str(status))
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self._latency.labels(route)
        histogram.observe(seconds)

    def generation(self, backend: str, seconds: float) -> None:
        histogram = self._generation_children.get(backend)
        if histogram is None:
            histogram = self._generation_children[backend] = self._generation.labels(backend)
        histogram.observe(seconds)

    def name_served(self, source: str) -> None:
        counter = self._name_children.get(source)
        if counter is None:
            counter = self._name_children[source] = self._names.labels(source)
        counter.inc()

    def rate_limited(self) -> None:
        self._limited.inc()

    def batch(self, size: int) -> None:
        self._batches.observe(size)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class PowertoolsMetrics:
    """CloudWatch embedded-metric-format lines through Powertools, flushed once per Lambda invocation."""

    def __init__(self, namespace: str = "Pokemon") -> None:
        from aws_lambda_powertools import Metrics as PowertoolsMetricsClient
        from aws_lambda_powertools.metrics import MetricUnit

        self.client = PowertoolsMetricsClient(namespace=namespace, service="pokemon")
        self._unit = MetricUnit

    def request(self, route: str, status: int, seconds: float) -> None:
        self.client.add_metric(name=f"Status{status // 100}xx", unit=self._unit.Count, value=1)
        self.client.add_metric(name="RequestLatency", unit=self._unit.Milliseconds, value=seconds * 1000)

    def generation(self, backend: str, seconds: float) -> None:
        self.client.add_metric(name=f"GenerationLatency_{backend}", unit=self._unit.Milliseconds, value=seconds * 1000)

    def name_served(self, source: str) -> None:
        self.client.add_metric(name=f"Names_{source}", unit=self._unit.Count, value=1)

    def rate_limited(self) -> None:
        self.client.add_metric(name="RateLimited", unit=self._unit.Count, value=1)

    def batch(self, size: int) -> None:
        self.client.add_metric(name="BatchSize", unit=self._unit.Count, value=size)

    def flush(self) -> None:
        """Write this invocation's metrics as one EMF line (nothing at all when none were recorded)."""
        if self.client.metric_set:
            self.client.flush_metrics()
