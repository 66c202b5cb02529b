"""`GET /v1/generate` as a bare ASGI endpoint.

This is the service's hot path. Served through FastAPI's router it would pay for route matching, the
dependency solver, a Request object and the exception middleware on every call — more than generating
the creature costs — so `GenerateRouteMiddleware` hands matching requests straight to `GenerateEndpoint`.
The FastAPI route of the same path (documented in the OpenAPI schema) renders through the same
`GenerateEndpoint.render`, so both ways answer byte for byte alike.

The answer is the JSON creature, or — when `Accept` prefers an image type (`handlers/negotiation.py`) — the
image itself with the creature in `X-Creature-*` headers. Errors are JSON either way, and every answer says
`Vary: Accept`, so a cache keeps the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Receive, Scope, Send

from core.creature import Creature, ImageFormat, parse_format, parse_seed, parse_size
from core.errors import InvalidRequest, PokemonError, ServiceUnavailable
from core.eventlog import log
from handlers.context import AppContext
from handlers.errors import JSON_CONTENT_TYPE, RawHeaders, answer_for
from handlers.middleware import client_address, client_key, header_value
from handlers.negotiation import negotiate
from handlers.routes import GENERATE_PATH

VARY_ACCEPT = (b"vary", b"Accept")
_CONTENT_TYPES = {image_format: (b"content-type", image_format.media_type.encode()) for image_format in ImageFormat}


@dataclass(frozen=True, slots=True)
class GenerateQuery:
    """`?seed=&format=&size=`, checked: each absent or valid, else `InvalidRequest` saying what is allowed."""

    seed: int | None = None
    format: ImageFormat | None = None  # None: not asked for (PNG, or the type `Accept` prefers)
    size: int | None = None

    @classmethod
    def parse(cls, query_string: bytes) -> GenerateQuery:
        if not query_string:
            return _NO_QUERY
        values: dict[str, str] = {}
        for key, item in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            values[key] = item  # the last one wins, as in FastAPI
        seed, image_format, size = values.get("seed"), values.get("format"), values.get("size")
        return cls(
            seed=None if seed is None else parse_seed(seed),
            format=None if image_format is None else parse_format(image_format),
            size=None if size is None else parse_size(size),
        )


_NO_QUERY = GenerateQuery()


def _accept(headers: RawHeaders) -> bytes | None:
    """Every `Accept` line joined with commas (RFC 9110 reads them as one list), as the raw bytes `negotiate`
    caches on; a loop rather than `joined_header`, since it runs on every request and finds none or one."""
    accept = None
    for key, value in headers:
        if key == b"accept":
            accept = value if accept is None else accept + b"," + value
    return accept


def creature_headers(creature: Creature) -> RawHeaders:
    """The creature's metadata as `X-Creature-*` headers, for answers whose body is the image.

    The name is percent-encoded UTF-8 (RFC 3986, nothing left unescaped but letters, digits and `-._~`), so no
    character of it — a control character from a model's answer included — can break or add a header line.
    The other values are ours: ids, enum values, digits and a timestamp.
    """
    image = creature.image
    return [
        (b"x-creature-id", creature.id.encode()),
        (b"x-creature-name", quote(creature.name, safe="").encode("ascii")),
        (b"x-creature-rarity", str(creature.rarity).encode()),
        (b"x-creature-seed", str(creature.seed).encode()),
        (b"x-creature-name-source", str(creature.name_origin).encode()),
        (b"x-creature-image-source", image.backend.encode()),
        (b"x-creature-generated-at", creature.generated_at.encode()),
    ]


class GenerateEndpoint:
    def __init__(self, context: AppContext) -> None:
        self.context = context

    async def render(self, scope: Scope) -> tuple[int, RawHeaders, tuple[bytes, ...]]:
        """Status, headers and body (in parts, to be sent in turn) for one request: auth first (a refused
        token spends no budget), then the query, then the rate limit, then the creature."""
        context = self.context
        client = client_address(scope)
        headers = scope["headers"]
        try:
            if context.auth.enabled:
                await context.authenticate(header_value(headers, b"authorization"), client, client_key(scope))
            query = GenerateQuery.parse(scope["query_string"])
            rate_headers = await context.take_token(client_key(scope))
            accept = _accept(headers)
            raw = negotiate(accept) if accept else None
            image_format = query.format or raw or ImageFormat.PNG
            creature = await context.service.generate(query.seed, format=image_format, size=query.size)
        except PokemonError as exc:
            if isinstance(exc, InvalidRequest):
                log.info("request.invalid", path=GENERATE_PATH, reason=str(exc))
            elif isinstance(exc, ServiceUnavailable):
                log.warning("service.unavailable", path=GENERATE_PATH, retry_after=exc.retry_after)
            answer = answer_for(exc)
            return answer.status_code, [*answer.raw_headers(), VARY_ACCEPT], (answer.body(),)
        if raw is None:
            return 200, [JSON_CONTENT_TYPE, VARY_ACCEPT, *rate_headers], creature.to_json_parts()
        content_type = _CONTENT_TYPES[creature.image.format]
        return 200, [content_type, VARY_ACCEPT, *creature_headers(creature), *rate_headers], (creature.image.raw(),)

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
