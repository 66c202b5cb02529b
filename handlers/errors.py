"""Every failure the API answers with, mapped to HTTP in one table.

An error answer is `{"error": {"code": "...", "message": "..."}}` with a status and headers. The core
raises its own errors (`core/errors.py`); `ERROR_TABLE` turns each into an `ApiError` — status, contract
code, a message safe to show, headers — and every path (the hot-path endpoint, FastAPI's router, the
middleware's last resort, the Lambda adapter) answers through `answer_for`, so one failure reads the same
wherever it happens. No stack trace, token or path ever reaches a body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from core.errors import (
    ConfigError,
    GenerationFailed,
    InvalidRequest,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
)

if TYPE_CHECKING:
    from starlette.responses import Response

RawHeaders = list[tuple[bytes, bytes]]
JSON_CONTENT_TYPE = (b"content-type", b"application/json")
REALM = 'Bearer realm="pokemon"'


class ApiError(Exception):
    """An error answer: raise it where only HTTP knows the failure (an unknown route), or get one from
    `answer_for` for any other exception."""

    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r})"

    def body(self) -> bytes:
        return json.dumps({"error": {"code": self.code, "message": self.message}}, separators=(",", ":")).encode()

    def raw_headers(self) -> RawHeaders:
        """The content type and this answer's headers, as ASGI wants them."""
        extra = [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in self.headers.items()]
        return [JSON_CONTENT_TYPE, *extra]

    def response(self) -> Response:
        from starlette.responses import Response

        return Response(self.body(), status_code=self.status_code, headers=self.headers, media_type="application/json")


class UnsupportedEvent(Exception):
    """A Lambda event of a kind this function does not serve (the message says which)."""


class MalformedEvent(Exception):
    """A Lambda event with an HTTP event's markers but not the fields it needs."""


def _unauthorized(exc: Unauthorized) -> ApiError:
    challenge = REALM + (', error="invalid_token"' if exc.invalid else "")
    return ApiError(401, "UNAUTHORIZED", str(exc), {"WWW-Authenticate": challenge})


def _rate_limited(exc: RateLimited) -> ApiError:
    return ApiError(429, "RATE_LIMITED", str(exc), exc.decision.headers())


def _unavailable(exc: ServiceUnavailable) -> ApiError:
    return ApiError(503, "SERVICE_UNAVAILABLE", str(exc), {"Retry-After": str(exc.retry_after)})


_HTTP_CODES = {404: ("NOT_FOUND", "No such route."), 405: ("METHOD_NOT_ALLOWED", "Method not allowed on this route.")}


def _http(exc: HTTPException) -> ApiError:
    code, message = _HTTP_CODES.get(exc.status_code, ("HTTP_ERROR", "Request failed."))
    return ApiError(exc.status_code, code, message, exc.headers)


INTERNAL_ERROR = ApiError(500, "INTERNAL_ERROR", "Something went wrong; please retry.")

# Exception class -> its answer. Looked up along the exception's MRO, so a subclass answers as its base
# unless it has an entry of its own; anything not here is an INTERNAL_ERROR.
ERROR_TABLE: dict[type[BaseException], Callable[[Any], ApiError]] = {
    ApiError: lambda exc: exc,
    InvalidRequest: lambda exc: ApiError(422, "INVALID_REQUEST", str(exc)),
    Unauthorized: _unauthorized,
    RateLimited: _rate_limited,
    GenerationFailed: lambda _: ApiError(
        500, "GENERATION_FAILED", "The creature could not be generated; please retry."
    ),
    ServiceUnavailable: _unavailable,
    ConfigError: lambda _: ApiError(500, "INTERNAL_ERROR", "The service is misconfigured; see its logs."),
    UnsupportedEvent: lambda exc: ApiError(400, "UNSUPPORTED_EVENT", str(exc)),
    MalformedEvent: lambda exc: ApiError(400, "MALFORMED_EVENT", str(exc)),
    HTTPException: _http,
}


def answer_for(exc: BaseException) -> ApiError:
    """The answer to give for `exc`, from `ERROR_TABLE`."""
    for cls in type(exc).__mro__:
        build = ERROR_TABLE.get(cls)
        if build is not None:
            return build(exc)
    return INTERNAL_ERROR
