"""How a component is doing, as reported by `/health`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HealthStatus(StrEnum):
    OK = "ok"
    WARMING = "warming"  # still loading; the readiness probe answers 503
    DEGRADED = "degraded"  # serving, but through a fallback

    @staticmethod
    def worst(*statuses: HealthStatus) -> HealthStatus:
        for candidate in (HealthStatus.WARMING, HealthStatus.DEGRADED):
            if candidate in statuses:
                return candidate
        return HealthStatus.OK


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    backend: str
    status: HealthStatus = HealthStatus.OK
    detail: str | None = None
