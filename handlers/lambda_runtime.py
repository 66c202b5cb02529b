"""AWS Lambda adapter: what the `generate`, `health` and `warmup` entry points share.

An execution environment serves many invocations, one at a time, and is frozen in between. So the app,
its `CreatureService` and one asyncio event loop are built on the first invocation and kept: Mangum runs
HTTP events on that loop, scheduled warm-up events run `service.warmup()` on it, and background tasks
started by one invocation (the name pool's workers, the model load) carry on in the next.

Each entry point says which kinds of event it accepts; anything else gets a 4xx-shaped answer and one log
line, never an exception (Mangum raises on events it cannot infer, and a raising handler looks like a
crash to whatever invoked it).
"""

# No `from __future__ import annotations` here: the event TypedDicts would then keep each field's type as text,
# which typing compiles one by one when the class is built — milliseconds of every cold start.

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal, Protocol, TypedDict, TypeGuard, cast

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum
from mangum.handlers import ALB
from mangum.types import LambdaContext as MangumContext
from mangum.types import Scope

from core import eventlog
from core.clientaddr import parse_hop
from core.config import get_settings
from core.errors import ConfigError
from core.eventlog import configure_logging, log, logger
from core.metrics import PowertoolsMetrics
from core.service import CreatureService
from handlers.api import create_app
from handlers.context import AppContext
from handlers.errors import MalformedEvent, UnsupportedEvent, answer_for
from handlers.middleware import joined_header

# --- What Lambda hands a handler ---


class LambdaContext(Protocol):
    """The part of Lambda's context object that Powertools reads (`inject_lambda_context`)."""

    @property
    def function_name(self) -> str: ...

    @property
    def memory_limit_in_mb(self) -> int: ...

    @property
    def invoked_function_arn(self) -> str: ...

    @property
    def aws_request_id(self) -> str: ...


class RestRequestContext(TypedDict, total=False):
    requestId: str
    identity: dict[str, Any]  # `sourceIp` is the client address Mangum passes on


class RestProxyEvent(TypedDict, total=False):
    """API Gateway REST proxy integration (also HTTP API payload 1.0, which has `version: "1.0"`)."""

    resource: str
    path: str
    httpMethod: str
    headers: dict[str, str] | None
    multiValueHeaders: dict[str, list[str]] | None
    queryStringParameters: dict[str, str] | None
    multiValueQueryStringParameters: dict[str, list[str]] | None
    body: str | None
    isBase64Encoded: bool
    requestContext: RestRequestContext


class HttpDescription(TypedDict):
    method: str
    path: str
    sourceIp: str


class HttpRequestContext(TypedDict, total=False):
    requestId: str
    http: HttpDescription


class HttpApiEvent(TypedDict, total=False):
    """API Gateway HTTP API, payload 2.0 (Lambda function URLs send the same shape)."""

    version: Literal["2.0"]
    rawPath: str
    rawQueryString: str
    headers: dict[str, str]
    queryStringParameters: dict[str, str]
    body: str
    isBase64Encoded: bool
    requestContext: HttpRequestContext


class AlbRequestContext(TypedDict):
    elb: dict[str, str]


class AlbEvent(TypedDict, total=False):
    requestContext: AlbRequestContext
    httpMethod: str
    path: str
    headers: dict[str, str]
    multiValueHeaders: dict[str, list[str]]  # instead of `headers` when the target group enables it
    queryStringParameters: dict[str, str]
    body: str
    isBase64Encoded: bool


# `detail-type` is no identifier, hence the functional form.
ScheduledEvent = TypedDict(
    "ScheduledEvent",
    {
        "version": str,
        "id": str,
        "detail-type": str,
        "source": str,
        "account": str,
        "time": str,
        "region": str,
        "resources": list[str],
        "detail": Any,
    },
    total=False,
)


# --- Which kind of event this is ---


class EventKind(StrEnum):
    API_GATEWAY_REST = "apigateway-rest"
    API_GATEWAY_HTTP = "apigateway-http"
    ALB = "alb"
    SCHEDULED = "scheduled"
    UNKNOWN = "unknown"


HTTP_EVENTS: Final = frozenset({EventKind.API_GATEWAY_REST, EventKind.API_GATEWAY_HTTP, EventKind.ALB})
SCHEDULED_EVENTS: Final = frozenset({EventKind.SCHEDULED})

# Correlation ids come from the event, so one Powertools decorator per kind. ALB's trace header sits under
# `multiValueHeaders` instead when the target group has multi-value headers on.
CORRELATION_ID_PATHS: Final[Mapping[EventKind, str | None]] = {
    EventKind.API_GATEWAY_REST: correlation_paths.API_GATEWAY_REST,
    EventKind.API_GATEWAY_HTTP: correlation_paths.API_GATEWAY_HTTP,
    EventKind.ALB: f'{correlation_paths.APPLICATION_LOAD_BALANCER} || multiValueHeaders."x-amzn-trace-id"[0]',
    EventKind.SCHEDULED: correlation_paths.EVENT_BRIDGE,
    EventKind.UNKNOWN: None,
}


def _section(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = event.get(key)
    return value if isinstance(value, Mapping) else {}


def is_alb(event: Mapping[str, Any]) -> TypeGuard[AlbEvent]:
    return "elb" in _section(event, "requestContext") and "httpMethod" in event


def is_http_api(event: Mapping[str, Any]) -> TypeGuard[HttpApiEvent]:
    return event.get("version") == "2.0" and isinstance(_section(event, "requestContext").get("http"), Mapping)


def is_rest_proxy(event: Mapping[str, Any]) -> TypeGuard[RestProxyEvent]:
    # `resource` too: it is what Mangum's REST adapter recognises the event by.
    return "httpMethod" in event and "resource" in event and isinstance(event.get("requestContext"), Mapping)


def is_scheduled(event: Mapping[str, Any]) -> TypeGuard[ScheduledEvent]:
    source = event.get("source")
    # EventBridge Scheduler hands a Lambda target the schedule's own input: any `aws.scheduler` envelope.
    return source == "aws.scheduler" or (source == "aws.events" and event.get("detail-type") == "Scheduled Event")


def classify(event: object) -> EventKind:
    """The kind of `event`; checked in the order Mangum infers its adapters, so both agree."""
    if not isinstance(event, Mapping):
        return EventKind.UNKNOWN
    if is_alb(event):
        return EventKind.ALB
    if is_http_api(event):
        return EventKind.API_GATEWAY_HTTP
    if is_rest_proxy(event):
        return EventKind.API_GATEWAY_REST
    if is_scheduled(event):
        return EventKind.SCHEDULED
    return EventKind.UNKNOWN


def _shape(event: object) -> dict[str, object]:
    """What an unknown event looks like, for its log line: the type and top-level keys, never values."""
    if isinstance(event, Mapping):
        return {"type": type(event).__name__, "keys": sorted(str(key)[:64] for key in event)[:20]}
    return {"type": type(event).__name__}


def error_result(event: object, error: Exception) -> dict[str, Any]:
    """A proxy-integration answer in the API's error shape (`answer_for`), for events that never reach the app."""
    answer = answer_for(error)
    headers = {"content-type": "application/json", **{key.lower(): value for key, value in answer.headers.items()}}
    result: dict[str, Any] = {
        "statusCode": answer.status_code,
        "body": answer.body().decode(),
        "isBase64Encoded": False,
    }
    if isinstance(event, Mapping) and is_alb(event) and "multiValueHeaders" in event:
        # A target group with multi-value headers on rejects answers that use `headers` (502).
        result["multiValueHeaders"] = {name: [value] for name, value in headers.items()}
    else:
        result["headers"] = headers
    return result


class _ALBClient(ALB):
    """Mangum's ALB adapter, but with the client address the load balancer saw as the peer.

    Mangum takes the whole `X-Forwarded-For` value (of its last line) as the peer. The load balancer that
    invoked the function appends the address it saw, so the last hop of all the lines is the peer; anything
    to its left was written by the caller. `RequestContextMiddleware` then applies the trusted proxies to
    it, as for any peer: the same rule as a server behind the same proxies.
    """

    @property
    def scope(self) -> Scope:
        scope = super().scope
        hops = joined_header(scope["headers"], b"x-forwarded-for") or ""
        address = parse_hop(hops.rsplit(",", 1)[-1])
        scope["client"] = (str(address) if address is not None else None, 0)
        return scope


# --- The runtime ---

LambdaHandler = Callable[[Mapping[str, Any], LambdaContext], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class EntryPoint:
    name: str
    accepts: frozenset[EventKind]


@dataclass(frozen=True, slots=True)
class _Booted:
    loop: asyncio.AbstractEventLoop
    service: CreatureService
    http: Mangum


class LambdaRuntime:
    """One per execution environment: the app, the service and the event loop, built on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._booted: _Booted | ConfigError | None = None
        self._metrics: PowertoolsMetrics | None = None  # installed on the first invocation, not at import
        # clear_state: keys appended during one invocation (a correlation id...) must not reach the next.
        # log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: events carry bearer tokens.
        self._invoke = {
            kind: logger.inject_lambda_context(
                self._invoke_kind, log_event=False, correlation_id_path=path, clear_state=True
            )
            for kind, path in CORRELATION_ID_PATHS.items()
        }

    def handle(self, event: object, context: LambdaContext, entry: EntryPoint) -> dict[str, Any]:
        self._enter()
        kind = classify(event)
        try:
            return self._invoke[kind](event, context, kind, entry)
        finally:
            if self._metrics is not None:
                self._metrics.flush()  # Lambda may freeze the process as soon as the handler returns

    def _enter(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            # Synchronous lines: Lambda freezes the process when the handler returns, so a background
            # writer's lines would surface an invocation late, or never.
            configure_logging(json_lines=True, background=False)
            _route_mangum_logs()
            namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Pokemon")
            self._metrics = PowertoolsMetrics(namespace)
            self._loop = asyncio.new_event_loop()
        # Mangum runs every request on `asyncio.get_event_loop()`: make that ours on every invocation, in
        # case something in the process (an `asyncio.run`) replaced or cleared the thread's loop.
        asyncio.set_event_loop(self._loop)
        return self._loop

    def _invoke_kind(self, event: object, context: LambdaContext, kind: EventKind, entry: EntryPoint) -> dict[str, Any]:
        if kind is EventKind.UNKNOWN:
            log.warning("lambda.unknown_event", entry=entry.name, event=_shape(event))
            return error_result(event, UnsupportedEvent("This function cannot handle this kind of event."))
        if kind not in entry.accepts:
            log.warning("lambda.unsupported_event", entry=entry.name, kind=kind, accepts=sorted(entry.accepts))
            return error_result(event, UnsupportedEvent(f"The {entry.name} function does not take {kind} events."))
        booted = self._boot()
        if isinstance(booted, ConfigError):
            log.error("lambda.config_error", entry=entry.name, variable=booted.variable, error=str(booted))
            return error_result(event, booted)
        if kind is EventKind.SCHEDULED:
            return self._warm_up(booted, entry)
        try:
            # Mangum's parameter types are its own (a dict event, a full context Protocol); it only passes
            # both through to the ASGI scope.
            return booted.http(cast(dict[str, Any], event), cast(MangumContext, context))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            # Whatever the app raises, Mangum answers with a 500 itself; what escapes is its reading of an
            # event that has an HTTP event's markers but not its fields (no `path`, `headers: null`...).
            log.warning("lambda.malformed_event", entry=entry.name, kind=kind, error=type(exc).__name__)
            return error_result(event, MalformedEvent(f"This {kind} event lacks fields it needs."))

    def _boot(self) -> _Booted | ConfigError:
        if self._booted is not None:
            return self._booted
        loop = self._enter()
        try:
            settings = get_settings()
            configure_logging(level=settings.log_level, json_lines=True, background=False)
            app = create_app(settings, metrics=self._metrics)
        except ConfigError as exc:
            # The environment cannot change until the function is redeployed: answer every invocation with
            # the same error instead of raising, which Lambda would meet with a crash-and-retry loop.
            self._booted = exc
            return exc
        context: AppContext = app.state.context
        # Lambda runs no lifespan (Mangum would run it around every invocation): start the backends here,
        # on the loop that every invocation uses, so that their background tasks outlive this one.
        loop.run_until_complete(context.service.start())
        self._booted = _Booted(loop, context.service, Mangum(app, lifespan="off", custom_handlers=[_ALBClient]))
        return self._booted

    def _warm_up(self, booted: _Booted, entry: EntryPoint) -> dict[str, Any]:
        summary = booted.loop.run_until_complete(booted.service.warmup())
        log.info("lambda.warmup", entry=entry.name, status=summary.get("status"), duration_ms=summary["durationMs"])
        return summary


def _route_mangum_logs() -> None:
    # Mangum logs through the standard library; send its warnings and errors (a request that failed
    # outside the app) through the service's JSON handler rather than the root logger's plain text.
    mangum_logger = logging.getLogger("mangum")
    mangum_logger.handlers = [eventlog.handler]
    mangum_logger.propagate = False
    mangum_logger.setLevel(logging.WARNING)  # its INFO line per request repeats `http.response`


RUNTIME: Final = LambdaRuntime()


def entry(name: str, *, accepts: frozenset[EventKind]) -> LambdaHandler:
    """A Lambda handler named `name` that serves the `accepts` kinds of event."""
    point = EntryPoint(name, accepts)

    def handler(event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        return RUNTIME.handle(event, context, point)

    handler.__qualname__ = f"{name}_handler"
    return handler
