"""Service metrics: one small interface, recorded by the core and the HTTP layer, exported by the entry point.

The server exports Prometheus text at `/metrics` (`PrometheusMetrics`); Lambda writes CloudWatch EMF
through Powertools (`PowertoolsMetrics`, flushed per invocation); tests and tools run with `NullMetrics`.
The sink is chosen by the entry point and handed to what records into it (the service, the middleware,
the image backend): nothing looks it up from a global, so nothing depends on import or build order.
Label values are bounded (the HTTP layer labels routes by the service's own paths, `handlers/routes.py`;
statuses are HTTP codes), so no caller can grow the series without limit.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


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


class _Count:
    """One counter series: its value and when it was first counted (Prometheus's `_created`)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class _Distribution:
    """One histogram series: a count per bucket (not cumulative), the sum, and when it was first observed."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # ascending, +Inf last
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        if amount == amount:  # prometheus-client puts nan in no bucket (nan <= bound is false) but in the sum
            self.counts[bisect.bisect_left(self.bounds, amount)] += 1.0
        self.sum += amount


class PrometheusMetrics:
    """The Prometheus sink: counted in plain numbers on the hot path, written as prometheus-client's own
    metrics would be (same families, samples, order, `_created` series) when `/metrics` is scraped.

    prometheus-client is imported by `exposition` only: tens of milliseconds of every server start-up
    otherwise, and its metrics take a lock and a Python loop over the buckets per observation. One lock
    guards the numbers here, as the pipeline may report a batch from a worker thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], _Count] = {}
        self._latency: dict[str, _Distribution] = {}
        self._generation: dict[str, _Distribution] = {}
        self._names: dict[str, _Count] = {}
        self._limited = _Count()  # a series without labels exists from the start, as in prometheus-client
        self._batches = _Distribution(_with_infinity(BATCH_BUCKETS))
        self._queue_depth: Callable[[], int] = lambda: 0
        self._components: Callable[[], Mapping[str, bool]] | None = None
        self._registry: Any = None  # prometheus-client's registry, built by the first exposition

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self._queue_depth = depth

    def watch_components(self, healthy: Callable[[], Mapping[str, bool]]) -> None:
        """`healthy()`: each `/health` component by name, True while it is ok; read when scraped."""
        self._components = healthy

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            counter = self._requests.get((route, status))
            if counter is None:
                counter = self._requests[(route, status)] = _Count()
            counter.value += 1.0
            latency = self._latency.get(route)
            if latency is None:
                latency = self._latency[route] = _Distribution(_LATENCY_BOUNDS)
            latency.observe(seconds)

    def generation(self, backend: str, seconds: float) -> None:
        with self._lock:
            histogram = self._generation.get(backend)
            if histogram is None:
                histogram = self._generation[backend] = _Distribution(_LATENCY_BOUNDS)
            histogram.observe(seconds)

    def name_served(self, source: str) -> None:
        with self._lock:
            counter = self._names.get(source)
            if counter is None:
                counter = self._names[source] = _Count()
            counter.value += 1.0

    def rate_limited(self) -> None:
        with self._lock:
            self._limited.value += 1.0

    def batch(self, size: int) -> None:
        with self._lock:
            self._batches.observe(size)

    def exposition(self) -> tuple[bytes, str]:
        # Imported here: only a process that is scraped pays for prometheus-client (see the class).
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self._registry is None:
            registry = CollectorRegistry()
            registry.register(self)  # a collector: `collect` below
            self._registry = registry
        return generate_latest(self._registry), CONTENT_TYPE_LATEST

    def collect(self) -> Iterator[Any]:
        """The metric families, as prometheus-client's Counter, Histogram and Gauge would yield them."""
        from prometheus_client import metrics as client_metrics
        from prometheus_client.metrics_core import Metric

        # prometheus-client's switch for `_created` series (PROMETHEUS_DISABLE_CREATED_SERIES, or its functions).
        created = bool(getattr(client_metrics, "_use_created", True))
        with self._lock:  # a consistent snapshot: the numbers are copied into the families
            families = [
                _counter_family(
                    "pokemon_http_requests", "HTTP requests by route and status", ("route", "status"), self._requests
                ),
                _histogram_family(
                    "pokemon_http_request_seconds",
                    "HTTP request duration",
                    ("route",),
                    {(route,): series for route, series in self._latency.items()},
                ),
                _histogram_family(
                    "pokemon_generation_seconds",
                    "Time to generate one creature, by image backend",
                    ("backend",),
                    {(backend,): series for backend, series in self._generation.items()},
                ),
                _counter_family(
                    "pokemon_names", "Names served, by source", ("source",), {(s,): c for s, c in self._names.items()}
                ),
                _counter_family("pokemon_rate_limited_requests", "Requests refused with 429", (), {(): self._limited}),
                _histogram_family("pokemon_batch_size", "Images per pipeline call", (), {(): self._batches}),
            ]
        for family in families:
            yield family.build(Metric, created)
        queue = Metric("pokemon_queue_depth", "Requests waiting for the image pipeline", "gauge")
        queue.add_sample("pokemon_queue_depth", {}, float(self._queue_depth()))
        yield queue
        if self._components is not None:
            # What /health says, for alerts: a degraded Redis, names from the fallback, a table failing.
            ok = Metric("pokemon_component_ok", "1 while a /health component is ok, 0 while it is not", "gauge")
            for component, healthy in sorted(self._components().items()):
                ok.add_sample("pokemon_component_ok", {"component": component}, 1.0 if healthy else 0.0)
            yield ok


@dataclass(frozen=True, slots=True)
class _Family:
    """A snapshot of one metric's series, turned into a prometheus-client `Metric` by `build`."""

    name: str
    documentation: str
    kind: str  # counter or histogram
    samples: list[tuple[str, dict[str, str], float, float]]  # suffix, labels, value, created (or -1: none)

    def build(self, metric_type: Any, created: bool) -> Any:
        family = metric_type(self.name, self.documentation, self.kind)
        for suffix, labels, value, when in self.samples:
            family.add_sample(self.name + suffix, labels, value)
            if when >= 0 and created:
                family.add_sample(self.name + "_created", labels, when)
        return family


def _counter_family(name: str, documentation: str, labels: tuple[str, ...], series: dict[Any, _Count]) -> _Family:
    samples = []
    for values, count in series.items():
        samples.append(("_total", dict(zip(labels, map(str, values), strict=True)), count.value, count.created))
    return _Family(name, documentation, "counter", samples)


def _histogram_family(
    name: str, documentation: str, labels: tuple[str, ...], series: dict[Any, _Distribution]
) -> _Family:
    samples: list[tuple[str, dict[str, str], float, float]] = []
    for values, distribution in series.items():
        label_set = dict(zip(labels, map(str, values), strict=True))
        total = 0.0
        for bound, count in zip(distribution.bounds, distribution.counts, strict=True):
            total += count
            samples.append(("_bucket", {**label_set, "le": _go_float(bound)}, total, -1.0))
        samples.append(("_count", label_set, total, -1.0))
        samples.append(("_sum", label_set, distribution.sum, distribution.created))
    return _Family(name, documentation, "histogram", samples)


def _go_float(bound: float) -> str:
    """A bucket bound as prometheus-client writes `le` (its `floatToGoString`)."""
    from prometheus_client.utils import floatToGoString

    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


def _with_infinity(bounds: tuple[float, ...]) -> tuple[float, ...]:
    return (*(float(bound) for bound in bounds), math.inf)


_LATENCY_BOUNDS = _with_infinity(LATENCY_BUCKETS)


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
