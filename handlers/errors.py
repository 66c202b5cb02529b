"""HTTP errors: a status, a contract code, a message safe to show, and headers."""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import BaseModel
from starlette.responses import Response


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """`{"error": {"code": "...", "message": "..."}}` — the shape of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, code={self.code!r})"


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()


def error_response(status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    body = error_body(code, message)
    return Response(body, status_code=status_code, headers=dict(headers or {}), media_type="application/json")


def describe_error(status_code: int) -> str:
    return {
        401: "A valid bearer token is required.",
        422: "A query parameter has a value outside what is allowed.",
        429: "Too many requests from this client; wait `Retry-After` seconds.",
        500: "The creature could not be generated.",
        503: "The service is warming up or busy; retry after `Retry-After` seconds.",
    }[status_code]
