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

from core.creature import parse_seed
from core.errors import InvalidRequest, PokemonError, ServiceUnavailable
from core.eventlog import log
from handlers.context import AppContext
from handlers.errors import JSON_CONTENT_TYPE, RawHeaders, answer_for
from handlers.middleware import client_address, client_key, header_value
from handlers.routes import GENERATE_PATH


def seed_from_query(query_string: bytes) -> int | None:
    """`?seed=`: absent, or plain decimal digits (`core.creature.parse_seed`); else `InvalidRequest`."""
    raw = _query_value(query_string, "seed")
    return None if raw is None else parse_seed(raw)


def _query_value(query_string: bytes, name: str) -> str | None:
    if not query_string:
        return None
    value = None
    for key, item in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
        if key == name:
            value = item  # the last one wins, as in FastAPI
    return value


class GenerateEndpoint:
    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def render(self, scope: Scope) -> tuple[int, RawHeaders, tuple[bytes, ...]]:
        """Status, headers and body (in parts, to be sent in turn) for one request: auth first (a refused
        token spends no budget), then the seed, then the rate limit, then the creature."""
        context = self.context
        client = client_address(scope)
        try:
            if context.auth.enabled:
                await context.authenticate(header_value(scope["headers"], b"authorization"), client, client_key(scope))
            seed = seed_from_query(scope["query_string"])
            rate_headers = await context.take_token(client_key(scope))
            creature = await context.service.generate(seed)
        except PokemonError as exc:
            if isinstance(exc, InvalidRequest):
                log.info("request.invalid", path=GENERATE_PATH, reason=str(exc))
            elif isinstance(exc, ServiceUnavailable):
                log.warning("service.unavailable", path=GENERATE_PATH, retry_after=exc.retry_after)
            answer = answer_for(exc)
            return answer.status_code, answer.raw_headers(), (answer.body(),)
        return 200, [JSON_CONTENT_TYPE, *rate_headers], creature.to_json_parts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status, headers, parts = await self.render(scope)
        headers.append((b"content-length", str(sum(map(len, parts))).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # One message per part: the image's part is sent as it is held, never copied into a joined body.
        last = len(parts) - 1
        for index, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": index < last})


class GenerateRouteMiddleware:
    """Sends `GET /v1/generate` to the bare endpoint; everything else, lifespan included, passes through."""

    def __init__(self, app: ASGIApp, *, endpoint: GenerateEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == GENERATE_PATH and scope["method"] == "GET":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)
