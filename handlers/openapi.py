"""The OpenAPI document: response shapes, operation ids, parameters and headers of the documented routes.

Built the first time `/openapi.json` or `/docs` is asked for, never when the app is. The app's routes are
registered bare (their handlers return finished responses, which FastAPI neither validates nor serialises),
because a response model costs each route pydantic schema work at start-up, a Lambda cold start included;
here each documented route is described again, with everything a client generator needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from core.creature import MAX_IMAGE_SIZE, MAX_SEED, MIN_IMAGE_SIZE, ImageFormat, Rarity
from core.version import version
from handlers.middleware import REQUEST_ID_PATTERN
from handlers.routes import GENERATE_PATH, HEALTH_PATH, READY_PATH

# --- The response shapes (responses are pre-encoded, not built from these) ---


class CreatureMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(pattern=r"^pkm_[A-Z0-9]{12}$", examples=["pkm_MFXJZ23A4FGH"])
    name: str = Field(examples=["Khra'gzathon"])
    rarity: Rarity
    seed: int = Field(ge=0, lt=MAX_SEED, description="Pass it back as `?seed=` to get the same creature.")
    nameSource: str = Field(description="`local` or `remote`: which name backend served.")
    imageSource: str = Field(description="The image backend that served, e.g. `files`.")
    imageFormat: ImageFormat = Field(description="How `imageBase64` is encoded: the `format` asked for, else png.")
    imageWidth: int = Field(ge=1, description="The image's width in pixels.")
    imageHeight: int = Field(ge=1, description="The image's height in pixels.")


class CreatureBody(BaseModel):
    imageBase64: str = Field(
        description="The image (a PNG unless `format` says otherwise: see `metadata.imageFormat`), standard base64,"
        " no `data:` prefix."
    )
    metadata: CreatureMetadata
    generatedAt: str = Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", examples=["2025-11-12T20:41:32Z"])


class HealthBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str = Field(description="`ok`, `degraded` (a fallback is serving) or `warming`.")
    time: str
    backend: str = Field(description="The image backend.")


class ReadyBody(BaseModel):
    ready: bool


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """`{"error": {"code": "...", "message": "..."}}` — the shape of every error response."""

    error: ErrorDetail


# --- Headers and parameters ---


def _header_doc(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_ID_RULE = f"made of `{REQUEST_ID_PATTERN}`"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_RESPONSE_HEADER: dict[str, Any] = {
    "description": (
        f"This request's id, also on every log line it caused: the caller's own `{REQUEST_ID_HEADER}` when it is"
        f" {_ID_RULE}; otherwise a new one."
    ),
    "required": True,
    "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"},
}
REQUEST_ID_PARAMETER: dict[str, Any] = {
    "name": REQUEST_ID_HEADER,
    "in": "header",
    "required": False,
    "description": (
        f"Your id for this request: when it is {_ID_RULE}, it is echoed in the response's `{REQUEST_ID_HEADER}`"
        " and logged with the request. Any other value is replaced by a new id, never refused."
    ),
    # Any text is accepted (an unusable id is replaced, not refused), so the schema holds no pattern.
    "schema": {"type": "string"},
}
SEED_PARAMETER: dict[str, Any] = {
    "name": "seed",
    "in": "query",
    "required": False,
    "description": "Makes name, rarity and image reproducible: 0 ≤ seed < 2^63.",
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SEED - 1},
}

FORMAT_PARAMETER: dict[str, Any] = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": (
        "How the image is encoded, lower case. Default: png, or the image type `Accept` prefers. With an `Accept`"
        " that prefers an image over JSON, this also chooses the image type of the body."
    ),
    "schema": {"type": "string", "enum": [image_format.value for image_format in ImageFormat], "default": "png"},
}
SIZE_PARAMETER: dict[str, Any] = {
    "name": "size",
    "in": "query",
    "required": False,
    "description": "The image's longest edge in pixels, aspect ratio kept. Default: the backend's own size.",
    "schema": {"type": "integer", "minimum": MIN_IMAGE_SIZE, "maximum": MAX_IMAGE_SIZE},
}
_IMAGE_CONTENT = {
    image_format.media_type: {"schema": {"type": "string", "format": "binary"}} for image_format in ImageFormat
}
_CREATURE_HEADERS = {
    f"X-Creature-{name}": _header_doc(f"{description} Only when the body is the image.")
    for name, description in (
        ("Id", "`metadata.id`."),
        ("Name", "`metadata.name`, UTF-8 percent-encoded (RFC 3986)."),
        ("Rarity", "`metadata.rarity`."),
        ("Seed", "`metadata.seed`."),
        ("Name-Source", "`metadata.nameSource`."),
        ("Image-Source", "`metadata.imageSource`."),
        ("Generated-At", "`generatedAt`."),
    )
}
_VARY = {"Vary": _header_doc("`Accept`: the answer depends on it (JSON, or the image itself).")}
_RATE_HEADERS = {
    "RateLimit-Limit": _header_doc("Requests allowed per minute (present when rate limiting is on)."),
    "RateLimit-Remaining": _header_doc("Requests left in the current bucket."),
    "RateLimit-Reset": _header_doc("Seconds until the bucket is full again."),
}
_RETRY_AFTER = {"Retry-After": _header_doc("Whole seconds to wait.")}

# What each documented error status means.
STATUS_DESCRIPTIONS: dict[int, str] = {
    401: "A valid bearer token is required.",
    422: "A query parameter has a value outside what is allowed.",
    429: "Too many requests from this client; wait `Retry-After` seconds.",
    500: "The creature could not be generated.",
    503: "The service is warming up or busy; retry after `Retry-After` seconds.",
}


def _error_doc(status_code: int, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"model": ErrorBody, "description": STATUS_DESCRIPTIONS[status_code]}
    if headers:
        doc["headers"] = headers
    return doc


# --- The documented operations ---


@dataclass(frozen=True, slots=True)
class Operation:
    """What the document says about one route; `operation_id` is what generated clients name the method."""

    operation_id: str
    summary: str
    tags: Sequence[str]
    response_model: type[BaseModel]
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    parameters: Sequence[dict[str, Any]] = ()


OPERATIONS: dict[tuple[str, str], Operation] = {
    (GENERATE_PATH, "GET"): Operation(
        operation_id="generateCreature",
        summary="Generate a creature",
        tags=("creatures",),
        response_model=CreatureBody,
        responses={
            200: {
                "description": (
                    "A new creature: the JSON below, or, when `Accept` prefers `image/png`, `image/webp` or"
                    " `image/jpeg` to `application/json` (by q-value, then order; an `Accept` naming `text/html`"
                    " always gets JSON), the image itself with the metadata in `X-Creature-*` headers."
                ),
                "headers": {**_VARY, **_RATE_HEADERS, **_CREATURE_HEADERS},
                "content": _IMAGE_CONTENT,
            },
            401: _error_doc(401, {"WWW-Authenticate": _header_doc('`Bearer realm="pokemon"`, per RFC 6750.')}),
            422: _error_doc(422),
            429: _error_doc(429, {**_RETRY_AFTER, **_RATE_HEADERS}),
            500: _error_doc(500),
            503: _error_doc(503, _RETRY_AFTER),
        },
        parameters=(SEED_PARAMETER, FORMAT_PARAMETER, SIZE_PARAMETER),
    ),
    (HEALTH_PATH, "GET"): Operation(
        operation_id="getHealth", summary="Liveness and status", tags=("health",), response_model=HealthBody
    ),
    (READY_PATH, "GET"): Operation(
        operation_id="getReadiness",
        summary="Readiness: 503 until warm-up is done",
        tags=("health",),
        response_model=ReadyBody,
        responses={503: {"model": ReadyBody, "description": "Still warming up.", "headers": _RETRY_AFTER}},
    ),
}


def _documented(route: BaseRoute) -> BaseRoute:
    """The route as the document describes it: the app's own route, redone with its `Operation`."""
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return route
    # HEAD is GET without the body: the document describes the GET.
    methods = sorted(set(route.methods or ()) - {"HEAD"})
    if len(methods) != 1:
        return route
    operation = OPERATIONS.get((route.path, methods[0]))
    if operation is None:
        return route
    return APIRoute(
        route.path,
        route.endpoint,  # the same function, so its docstring is still the operation's description
        methods=methods,
        name=route.name,
        operation_id=operation.operation_id,
        summary=operation.summary,
        tags=list(operation.tags),
        response_model=operation.response_model,
        responses=operation.responses,
        openapi_extra={"parameters": list(operation.parameters)} if operation.parameters else None,
    )


def _with_request_id(operation: dict[str, Any]) -> None:
    # Every answer, error or not, carries the header (the request-context middleware adds it), and every
    # operation takes one.
    # New dicts throughout: the document shares some with this module's constants (`_RATE_HEADERS`...).
    operation["parameters"] = [*operation.get("parameters", ()), dict(REQUEST_ID_PARAMETER)]
    for response in operation.get("responses", {}).values():
        response["headers"] = {**response.get("headers", {}), REQUEST_ID_HEADER: dict(REQUEST_ID_RESPONSE_HEADER)}


def build_document(app: FastAPI, *, bearer_auth: bool) -> dict[str, Any]:
    """The OpenAPI document of `app`; the bearer scheme is declared when (and only when) auth is on."""
    document = get_openapi(
        title=app.title,
        version=version(),
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=[_documented(route) for route in app.routes],
        tags=app.openapi_tags,
        servers=app.servers,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    for path_item in document["paths"].values():
        for operation in path_item.values():
            _with_request_id(operation)
    if bearer_auth:
        document.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["paths"][GENERATE_PATH]["get"]["security"] = [{"bearer": []}]
    return document
