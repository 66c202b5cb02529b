"""`GET /v1/generate` as a bare ASGI endpoint.

This is the service's hot path. Served through FastAPI's router it would pay for route matching, the
dependency solver, a Request object and the exception middleware on every call — more than generating
the creature costs — so `GenerateRouteMiddleware` hands matching requests straight to `GenerateEndpoint`.
The FastAPI route of the same path (documented in the OpenAPI schema) renders through the same
`GenerateEndpoint.render`, so both ways answer byte for byte alike.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from core.creature import SEED_RULE
from core.creature import parse_seed as creature_seed
from core.errors import GenerationFailed, ServiceUnavailable
from core.telemetry import log
from handlers.context import AppContext
from handlers.errors import ApiError, error_body
from handlers.middleware import client_address, header_value

PATH = "/v1/generate"
RawHeaders = list[tuple[bytes, bytes]]
_JSON = (b"content-type", b"application/json")


def parse_seed(raw: str | None) -> int | None:
    """`?seed=`, absent or in plain decimal digits (`core.creature.parse_seed`); anything else is a 422."""
    if raw is None:
        return None
    try:
        return creature_seed(raw)
    except ValueError:
        raise ApiError(422, "INVALID_REQUEST", SEED_RULE) from None


def _query_value(query_string: bytes, name: str) -> str | None:
    if not query_string:
        return None
    value = None
    for key, item in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == name:
            value = item  # the last one wins, as in FastAPI
    return value


def _raw(headers: dict[str, str]) -> RawHeaders:
    return [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]


class GenerateEndpoint:
    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def render(self, scope: Scope) -> tuple[int, RawHeaders, bytes]:
        """Status, headers and body for one request: auth first (a refused token spends no budget), then
        the seed, then the rate limit, then the creature."""
        context = self.context
        client = client_address(scope)
        try:
            if context.auth.enabled:
                context.authenticate(header_value(scope["headers"], b"authorization"), client)
            seed = parse_seed(_query_value(scope["query_string"], "seed"))
            rate_headers = await context.take_token(client)
            creature = await context.service.generate(seed)
        except ApiError as exc:
            if exc.status_code == 422:
                log.info("request.invalid", path=PATH, reason=exc.message)
            return exc.status_code, [_JSON, *_raw(exc.headers)], error_body(exc.code, exc.message)
        except GenerationFailed:
            return 500, [_JSON], error_body("GENERATION_FAILED", "The creature could not be generated; please retry.")
        except ServiceUnavailable as exc:
            log.warning("service.unavailable", path=PATH, retry_after=exc.retry_after)
            headers = [_JSON, (b"retry-after", str(exc.retry_after).encode())]
            return 503, headers, error_body("SERVICE_UNAVAILABLE", str(exc))
        headers = [_JSON, *_raw(rate_headers)] if rate_headers else [_JSON]
        return 200, headers, creature.to_json_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, headers, body = await self.render(scope)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class GenerateRouteMiddleware:
    """Sends `GET /v1/generate` to the bare endpoint; everything else, lifespan included, passes through."""

    def __init__(self, app: ASGIApp, *, endpoint: GenerateEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
