"""The API's paths, in a module with no imports: the command line names them without loading the web stack."""

from __future__ import annotations

GENERATE_PATH = "/v1/generate"
HEALTH_PATH = "/health"
READY_PATH = "/health/ready"
METRICS_PATH = "/metrics"

# The paths metrics are labelled with; any other path counts as "other", so no caller can grow the series.
LABELLED_PATHS = frozenset({GENERATE_PATH, HEALTH_PATH, READY_PATH, METRICS_PATH, "/", "/openapi.json", "/docs"})


def route_label(path: str) -> str:
    return path if path in LABELLED_PATHS else "other"
