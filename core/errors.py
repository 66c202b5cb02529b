"""Failures the service reports to its callers; the adapters map each to a status code."""

from __future__ import annotations


class GenerationFailed(Exception):
    """A creature could not be produced, even through the fallbacks (HTTP 500 GENERATION_FAILED)."""


class ServiceUnavailable(Exception):
    """The service cannot take the request now: overloaded or still warming up (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
