"""Pure ASGI middleware: request id, client address and the `http.request` / `http.response` log lines.

Written against raw ASGI rather than `BaseHTTPMiddleware` because it runs on every request: no extra
task, no body buffering, and non-HTTP scopes (lifespan, websockets) pass straight through.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.clientaddr import ClientAddressResolver
from core.eventlog import bind_context, log, unbind_context
from core.metrics import Metrics, NullMetrics
from core.redaction import mask_query
from handlers.errors import answer_for
from handlers.routes import route_label

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_PATTERN = "[A-Za-z0-9._:-]{1,128}"  # a caller's id is echoed only when it is this plainly an id
_SAFE_REQUEST_ID = re.compile(REQUEST_ID_PATTERN.encode())
MAX_LOGGED_BODY = 4096
# Request ids correlate log lines; they are not secrets, so no system call per request.
_request_ids = random.Random(secrets.randbits(128))


def header_value(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The first value of a (lower-case) header in an ASGI scope's raw headers."""
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def joined_header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    """Every line of a (lower-case) header, joined with commas in order: one list, as RFC 9110 reads them."""
    values = [value.decode("latin-1") for key, value in headers if key == name]
    return ",".join(values) if values else None


def _request_id(headers: list[tuple[bytes, bytes]], secret: bytes | None = None) -> str:
    for key, value in headers:
        # Echo a caller's id only when it is plainly an id: it ends up in log lines and headers. Never one
        # holding the bearer token: a client must not get the token written to the logs under another name.
        if key == REQUEST_ID_HEADER and _SAFE_REQUEST_ID.fullmatch(value) and not (secret and secret in value):
            return value.decode("ascii")
    return f"{_request_ids.getrandbits(64):016x}"


def client_address(scope: Scope) -> str:
    """The address `RequestContextMiddleware` resolved, or the raw peer outside it."""
    state: dict[str, Any] = scope.get("state") or {}
    address = state.get("client_address")
    if isinstance(address, str):
        return address
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def client_key(scope: Scope) -> str:
    """The client's rate-limit key `RequestContextMiddleware` resolved (an IPv6 client's prefix), else its address."""
    state: dict[str, Any] = scope.get("state") or {}
    key = state.get("client_key")
    return key if isinstance(key, str) else client_address(scope)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        resolver: ClientAddressResolver,
        metrics: Metrics | None = None,
        log_request_body: bool = False,
        secret: str | None = None,
    ) -> None:
        """`secret` is the bearer token, if any: kept out of request ids and, even encoded, out of queries."""
        self.app = app
        self.resolver = resolver
        self.log_request_body = log_request_body
        self.metrics = metrics or NullMetrics()
        self.secret = secret or None
        self._raw_secret = secret.encode() if secret else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _request_id(headers, self._raw_secret)
        peer = scope.get("client")
        resolver = self.resolver
        # Only the header the trusted proxies write is read, and only when some are trusted.
        proxy_header = joined_header(headers, resolver.header_name) if resolver.trusts_proxies else None
        client, key = resolver.resolve(peer[0] if peer else None, proxy_header)
        state = scope.setdefault("state", {})
        state["client_address"] = client
        state["client_key"] = key
        state["request_id"] = request_id
        method, path = scope["method"], scope["path"]
        # Every line logged while this request runs carries its id, whichever module writes it.
        token = bind_context(request_id=request_id)
        try:
            request_fields: dict[str, object] = {"method": method, "path": path, "client": client}
            if scope["query_string"]:
                request_fields["query"] = mask_query(scope["query_string"][:512].decode("latin-1"), self.secret)
            if self.log_request_body:
                receive, body = await _buffer_body(receive)
                request_fields["body"] = body[:MAX_LOGGED_BODY].decode("utf-8", "replace")
            log.info("http.request", **request_fields)

            status = 500
            started = False
            raw_request_id = request_id.encode()

            async def send_with_id(message: Message) -> None:
                nonlocal status, started
                if message["type"] == "http.response.start":
                    status, started = message["status"], True
                    message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, raw_request_id)]
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                # Caught here rather than in Starlette's outermost handler so the client still gets the
                # contract's JSON body and request id, and no traceback reaches the logs.
                log.error("http.unhandled", path=path, error=type(exc).__name__)
                if started:
                    raise
                await answer_for(exc).response()(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - began
                self.metrics.request(route_label(path), status, elapsed)
                duration_ms = round(elapsed * 1000, 3)
                log.info(
                    "http.response", method=method, path=path, status=status, duration_ms=duration_ms, client=client
                )
        finally:
            unbind_context(token)


async def _buffer_body(receive: Receive) -> tuple[Receive, bytes]:
    """Read the whole body for the log, then replay it to the app unchanged."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        if messages:
            return messages.pop(0)
        return await receive()

    return replay, b"".join(chunks)
