"""The FastAPI app: routes, error mapping, the OpenAPI contract, and the wiring of middleware and hot path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from core import wiring
from core.config import Settings, get_settings
from core.errors import InvalidRequest, PokemonError
from core.eventlog import flush_logs, formatter, log
from core.health import HealthStatus
from core.metrics import Metrics, PrometheusMetrics
from core.service import CreatureService, ServiceHealth
from handlers.context import AppContext
from handlers.endpoint import GenerateEndpoint, GenerateRouteMiddleware
from handlers.errors import ApiError, answer_for
from handlers.middleware import RequestContextMiddleware
from handlers.routes import GENERATE_PATH, HEALTH_PATH, METRICS_PATH, READY_PATH
from handlers.webpage import add_web_page

# --- Routes ---


def context_of(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


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


def health_report(context: AppContext) -> ServiceHealth:
    """The service's report with what the app holds besides it: the limiter and the shared store."""
    report = context.service.health()
    if context.limiter is not None:
        report = report.with_rate_limit(context.limiter.health())
    if context.shared_store is not None:
        report = report.with_shared_store(context.shared_store.health())
    return report


async def health(request: Request) -> JSONResponse:
    return JSONResponse(health_report(context_of(request)).to_dict())


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


def _openapi_on_demand(app: FastAPI, *, bearer_auth: bool) -> None:
    """The OpenAPI document is built when first asked for (`handlers/openapi.py`), not with the app."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # Imported here: the response models and the schema generation would otherwise be paid by every
            # start-up, a Lambda cold start included, for a document most processes never serve.
            from handlers.openapi import build_document

            app.openapi_schema = build_document(app, bearer_auth=bearer_auth)
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
    secret = settings.bearer_token.get_secret_value() if settings.bearer_token is not None else None
    if secret:
        formatter.mask(secret)  # whatever a client sends back to us (path, query, headers), never in a line
    parts = wiring.build(settings, metrics=metrics, service=service)
    service = parts.service
    context = AppContext(
        service=service,
        auth=parts.auth,
        limiter=parts.limiter,
        metrics=parts.metrics,
        auth_failures=parts.auth_failures,
        shared_store=parts.shared_store,
    )

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
            await parts.aclose()
            log.info("shutdown.complete")
            flush_logs()

    # No `version`: the document reads it from the installed metadata when it is built (handlers/openapi.py).
    app = FastAPI(
        title="Pokémon Generator API",
        description="Invents a creature on every call: an image, a name and a weighted rarity.",
        lifespan=lifespan,
        # No automatic `/health/` -> `/health` redirect: it built its Location from the request's Host header,
        # which the client writes. A path with a trailing slash is a plain 404 like any other unknown path.
        redirect_slashes=False,
    )
    app.state.context = context
    app.state.generate_endpoint = GenerateEndpoint(context)
    # Documented in handlers/openapi.py (operation ids, response shapes, headers), which the document is
    # built from on demand.
    app.add_api_route(GENERATE_PATH, generate, methods=["GET"])
    # HEAD for load balancers and uptime checks: the GET answer, whose body the server leaves out (the
    # document describes GET only). Generation keeps GET only: a HEAD would cost a creature nobody sees.
    app.add_api_route(HEALTH_PATH, health, methods=["GET", "HEAD"])
    app.add_api_route(READY_PATH, ready, methods=["GET", "HEAD"])
    if isinstance(parts.metrics, PrometheusMetrics):
        parts.metrics.watch_queue(service.queue_depth)
        parts.metrics.watch_components(
            lambda: {name: part.status is HealthStatus.OK for name, part in health_report(context).components().items()}
        )
        app.add_api_route(METRICS_PATH, prometheus, methods=["GET"], include_in_schema=False)
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
        secret=secret,
    )
    _openapi_on_demand(app, bearer_auth=context.auth.enabled)
    log.info(
        "startup.config",
        settings=settings.public_view(),
        imageBackend=service.image_backend,
        nameBackend=service.name_backend,
    )
    return app
