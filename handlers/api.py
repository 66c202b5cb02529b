"""The FastAPI app: routes, error mapping, the OpenAPI contract, and the wiring of middleware and hot path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from core import wiring
from core.config import Settings, get_settings
from core.creature import MAX_SEED, Rarity
from core.errors import InvalidRequest, PokemonError
from core.eventlog import flush_logs, log
from core.metrics import Metrics, PrometheusMetrics
from core.service import CreatureService
from core.version import version
from handlers.context import AppContext
from handlers.endpoint import GenerateEndpoint, GenerateRouteMiddleware
from handlers.errors import STATUS_DESCRIPTIONS, ApiError, ErrorBody, answer_for
from handlers.middleware import RequestContextMiddleware
from handlers.webpage import add_web_page

# --- The response shapes, for the OpenAPI document (responses are pre-encoded, not built from these) ---


class CreatureMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^pkm_[A-Z0-9]{12}$", examples=["pkm_MFXJZ23A4FGH"])
    name: str = Field(examples=["Khra'gzathon"])
    rarity: Rarity
    seed: int = Field(ge=0, lt=MAX_SEED, description="Pass it back as `?seed=` to get the same creature.")
    nameSource: str = Field(description="`local` or `remote`: which name backend served.")
    imageSource: str = Field(description="The image backend that served, e.g. `files`.")


class CreatureBody(BaseModel):
    imageBase64: str = Field(description="A PNG, standard base64, no `data:` prefix.")
    metadata: CreatureMetadata
    generatedAt: str = Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", examples=["2025-11-12T20:41:32Z"])


class HealthBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str = Field(description="`ok`, `degraded` (a fallback is serving) or `warming`.")
    time: str
    backend: str = Field(description="The image backend.")


class ReadyBody(BaseModel):
    ready: bool


def _header_doc(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_RATE_HEADERS = {
    "RateLimit-Limit": _header_doc("Requests allowed per minute (present when rate limiting is on)."),
    "RateLimit-Remaining": _header_doc("Requests left in the current bucket."),
    "RateLimit-Reset": _header_doc("Seconds until the bucket is full again."),
}


def _error_doc(status_code: int, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": ErrorBody, "description": STATUS_DESCRIPTIONS[status_code]}
    if headers:
        doc["headers"] = headers
    return doc


GENERATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A new creature.", "headers": _RATE_HEADERS},
    401: _error_doc(401, {"WWW-Authenticate": _header_doc('`Bearer realm="pokemon"`, per RFC 6750.')}),
    422: _error_doc(422),
    429: _error_doc(429, {"Retry-After": _header_doc("Whole seconds to wait."), **_RATE_HEADERS}),
    500: _error_doc(500),
    503: _error_doc(503, {"Retry-After": _header_doc("Whole seconds to wait.")}),
}


# --- Dependencies ---


SEED_PARAMETER: dict[str, Any] = {
    "name": "seed",
    "in": "query",
    "required": False,
    "description": "Makes name, rarity and image reproducible: 0 ≤ seed < 2^63.",
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEED - 1},
}


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


# --- Routes ---


async def generate(request: Request) -> Response:
    """Served by `GenerateRouteMiddleware` in a normal app; this route documents it and serves when the
    app is built with `hot_path=False` — through the very same renderer."""
    endpoint: GenerateEndpoint = request.app.state.generate_endpoint
    status, headers, parts = await endpoint.render(request.scope)
    response = Response(b"".join(parts), status_code=status)
    response.raw_headers.extend(headers)
    return response


async def prometheus(request: Request) -> Response:
    sink = context_of(request).metrics
    assert isinstance(sink, PrometheusMetrics)
    body, content_type = sink.exposition()
    return Response(body, media_type=content_type)


async def health(request: Request) -> JSONResponse:
    return JSONResponse(context_of(request).service.health().to_dict())


async def ready(request: Request) -> JSONResponse:
    if context_of(request).service.health().ready:
        return JSONResponse({"ready": True})
    return JSONResponse({"ready": False}, status_code=503, headers={"Retry-After": "1"})


# --- Errors: FastAPI's own exceptions go through the one table too (handlers/errors.py) ---


async def _mapped_error(request: Request, exc: Exception) -> Response:
    answer = answer_for(exc)
    if isinstance(exc, StarletteHTTPException):
        log.info("http.error", path=request.url.path, status=exc.status_code)
    return answer.response()


def _describe_validation(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("query", "path", "header"))
        problems.append(f"{location or 'request'}: {error.get('msg', 'invalid value')}")
    return "; ".join(problems) or "The request is invalid."


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = _describe_validation(exc)
    log.info("request.invalid", path=request.url.path, reason=message)
    return answer_for(InvalidRequest(message)).response()


# --- The app ---


def _with_bearer_security(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document when (and only when) auth is on."""
    build_schema = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_schema()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["paths"]["/v1/generate"]["get"]["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    metrics: Metrics | None = None,
    service: CreatureService | None = None,
    hot_path: bool = True,
) -> FastAPI:
    """Build the app; with no arguments it reads the environment and checks every backend.

    `metrics` is the sink the entry point chose (Prometheus in the server, EMF on Lambda; none by default);
    `service` replaces the one the settings describe (tests); `hot_path=False` leaves `GET /v1/generate`
    to FastAPI's router (for comparisons and tests).
    """
    settings = settings or get_settings()
    parts = wiring.build(settings, metrics=metrics, service=service)
    service = parts.service
    context = AppContext(service=service, auth=parts.auth, limiter=parts.limiter, metrics=parts.metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Warm up in the background so /health and the readiness probe answer while backends load.
        warming = asyncio.create_task(service.start())
        try:
            yield
        finally:
            if not warming.done():
                warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await warming
            await service.aclose()
            log.info("shutdown.complete")
            flush_logs()

    app = FastAPI(
        title="Pokémon Generator API",
        version=version(),
        description="Invents a creature on every call: an image, a name and a weighted rarity.",
        lifespan=lifespan,
    )
    app.state.context = context
    app.state.generate_endpoint = GenerateEndpoint(context)
    app.add_api_route(
        "/v1/generate",
        generate,
        methods=["GET"],
        response_model=CreatureBody,
        responses=GENERATE_RESPONSES,
        openapi_extra={"parameters": [SEED_PARAMETER]},
        summary="Generate a creature",
        tags=["creatures"],
    )
    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        response_model=HealthBody,
        summary="Liveness and status",
        tags=["health"],
    )
    app.add_api_route(
        "/health/ready",
        ready,
        methods=["GET"],
        response_model=ReadyBody,
        responses={503: {"model": ReadyBody, "description": "Still warming up."}},
        summary="Readiness: 503 until warm-up is done",
        tags=["health"],
    )
    if isinstance(parts.metrics, PrometheusMetrics):
        parts.metrics.watch_queue(service.queue_depth)
        app.add_api_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)
    for mapped in (PokemonError, ApiError, StarletteHTTPException):
        app.add_exception_handler(mapped, _mapped_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    add_web_page(app)
    if hot_path:
        app.add_middleware(GenerateRouteMiddleware, endpoint=app.state.generate_endpoint)
    app.add_middleware(  # added last, so outermost: it sees every request, the hot path included
        RequestContextMiddleware,
        resolver=parts.client_addresses,
        metrics=parts.metrics,
        log_request_body=settings.log_request_body,
    )
    if context.auth.enabled:
        _with_bearer_security(app)
    log.info(
        "startup.config",
        settings=settings.public_view(),
        imageBackend=service.image_backend,
        nameBackend=service.name_backend,
    )
    return app
