"""The Lambda handlers, invoked as Lambda invokes them.

Each scenario is one execution environment: a fresh interpreter (so import side effects, the lazily built
service and the cold start are real) that imports the handler modules and calls them one invocation
after another with the sample events from infra/events and a context object like Lambda's.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_llm import FakeLLM
from tests.support.paths import REPO, SHIPPED_IMAGES
from tests.support.python_child import python_ok

EVENTS = REPO / "infra" / "events"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TOKEN = "lambda-s3cret"

# The execution environment. Standard output is left to the service's log lines, as in Lambda; results go
# to the file named by argv[1].
RUNNER = """
import asyncio, importlib, json, sys

class FakeContext:
    def __init__(self, number):
        self.function_name = "pokemon-generate"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pokemon-generate"
        self.aws_request_id = f"req-{number}"

results = []
for number, step in enumerate(json.load(sys.stdin)):
    handler = importlib.import_module("handlers." + step["handler"]).handler
    result = handler(step["event"], FakeContext(number))
    loop = asyncio.get_event_loop()  # the loop Mangum runs the next request on
    results.append({"result": result, "loop": id(loop), "loopClosed": loop.is_closed()})
heavy = sorted(name for name in ("torch", "diffusers") if name in sys.modules)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({"results": results, "heavyModules": heavy}, out)
"""


@dataclass(frozen=True)
class Invocation:
    handler: str
    event: Any  # any JSON: Lambda passes whatever the invoker sent


@dataclass(frozen=True)
class Environment:
    results: list[dict[str, Any]]
    loops: list[tuple[int, bool]]
    lines: list[dict[str, Any]]
    metrics: list[dict[str, Any]]  # CloudWatch EMF documents, one per invocation that recorded any
    heavy_modules: list[str]

    def body(self, index: int) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.results[index]["body"])
        return body

    def lines_of(self, index: int) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("function_request_id") == f"req-{index}"]

    def events_of(self, index: int) -> list[str]:
        return [line["message"] for line in self.lines_of(index)]


def run_environment(tmp: Path, steps: list[Invocation], **env: str) -> Environment:
    out = tmp / "results.json"
    steps_json = json.dumps([{"handler": step.handler, "event": step.event} for step in steps])
    # No invocation may raise: a handler that raises is a failed invocation to Lambda.
    completed = python_ok(
        "-c", RUNNER, str(out), stdin=steps_json, **{"POKEMON_IMAGES_DIR": str(SHIPPED_IMAGES), **env}
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    recorded = json.loads(out.read_text(encoding="utf-8"))
    documents = [json.loads(line) for line in completed.stdout.splitlines()]  # every line must be JSON
    return Environment(
        results=[entry["result"] for entry in recorded["results"]],
        loops=[(entry["loop"], entry["loopClosed"]) for entry in recorded["results"]],
        lines=[document for document in documents if "_aws" not in document],
        metrics=[document for document in documents if "_aws" in document],
        heavy_modules=recorded["heavyModules"],
    )


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def with_headers(base: Mapping[str, Any], **headers: str) -> dict[str, Any]:
    """`base` with `headers` added, in `multiValueHeaders` too where the event has them (Mangum merges both)."""
    changed = copy.deepcopy(dict(base))
    for name, value in headers.items():
        key = name.replace("_", "-")
        changed["headers"][key] = value
        if changed.get("multiValueHeaders"):
            changed["multiValueHeaders"][key] = [value]
    return changed


def from_address(base: Mapping[str, Any], address: str) -> dict[str, Any]:
    changed = copy.deepcopy(dict(base))
    changed["requestContext"]["http"]["sourceIp"] = address
    return changed


def assert_creature(result: Mapping[str, Any]) -> dict[str, Any]:
    """`result` is a 200 answer carrying a creature; returns the creature."""
    assert result["statusCode"] == 200, result
    assert result["isBase64Encoded"] is False  # JSON goes back as text, as Mangum does for text types
    assert result["headers"]["content-type"] == "application/json"
    assert result["headers"]["x-request-id"]
    body: dict[str, Any] = json.loads(result["body"])
    assert set(body) == {"imageBase64", "metadata", "generatedAt"}
    assert base64.b64decode(body["imageBase64"], validate=True).startswith(PNG_SIGNATURE)
    assert body["metadata"]["imageSource"] == "files"
    return body


# --- One environment serving every kind of event, in the order a real one might meet them ---

UNKNOWN, REST, HTTP, SEED, SEED_AGAIN, ALB, SCHEDULED_ON_GENERATE, WARMUP, SCHEDULER_ON_WARMUP = range(9)
HTTP_ON_WARMUP, HEALTH, SCHEDULED_ON_HEALTH, NOT_AN_OBJECT, REST_AFTER_WARMUP, MALFORMED = range(9, 15)


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    steps = [
        Invocation("generate", {"hello": "world"}),  # first: an unknown event must not need the service
        Invocation("generate", event("apigateway-rest-generate")),
        Invocation("generate", event("apigateway-http-generate")),
        Invocation("generate", event("apigateway-http-generate-seed")),
        Invocation("generate", event("apigateway-http-generate-seed")),
        Invocation("generate", event("alb-generate")),
        Invocation("generate", event("scheduled-event")),
        Invocation("warmup", event("scheduled-event")),
        Invocation("warmup", event("scheduler-event")),
        Invocation("warmup", event("apigateway-http-generate")),
        Invocation("health", event("apigateway-http-health")),
        Invocation("health", event("scheduled-event")),
        Invocation("generate", ["not", "an", "object"]),
        Invocation("generate", event("apigateway-rest-generate")),
        Invocation(
            "generate", {key: value for key, value in event("apigateway-rest-generate").items() if key != "path"}
        ),
    ]
    return run_environment(tmp_path_factory.mktemp("lambda"), steps)


def test_http_events_are_served_by_the_app(environment: Environment) -> None:
    for index in (REST, REST_AFTER_WARMUP):
        result = environment.results[index]
        assert_creature(result)
        assert "multiValueHeaders" in result  # the REST proxy answer's shape
    http = environment.results[HTTP]
    assert_creature(http)
    assert http["headers"]["ratelimit-limit"] == "60"
    alb = environment.results[ALB]
    assert_creature(alb)


def test_a_seed_in_the_query_string_replays_the_creature(environment: Environment) -> None:
    first = assert_creature(environment.results[SEED])
    again = assert_creature(environment.results[SEED_AGAIN])
    assert first["metadata"]["seed"] == 42
    assert first["imageBase64"] == again["imageBase64"]
    assert {**first["metadata"], "id": None} == {**again["metadata"], "id": None}
    assert first["metadata"]["id"] != again["metadata"]["id"]


def test_health_over_http(environment: Environment) -> None:
    result = environment.results[HEALTH]
    assert result["statusCode"] == 200
    assert result["headers"]["content-type"] == "application/json"
    # The service was started when the environment booted (Lambda runs no lifespan): not `warming`.
    assert environment.body(HEALTH)["status"] == "ok"


def test_scheduled_events_warm_up_without_reaching_mangum(environment: Environment) -> None:
    for index in (SCHEDULED_ON_GENERATE, WARMUP, SCHEDULER_ON_WARMUP):
        summary = environment.results[index]
        assert summary["warmed"] is True
        assert summary["status"] == "ok"
        assert "statusCode" not in summary
        assert "lambda.warmup" in environment.events_of(index)
        assert "http.request" not in environment.events_of(index)


def test_events_an_entry_does_not_take_get_a_400_answer(environment: Environment) -> None:
    expected = {
        UNKNOWN: "lambda.unknown_event",
        NOT_AN_OBJECT: "lambda.unknown_event",
        HTTP_ON_WARMUP: "lambda.unsupported_event",
        SCHEDULED_ON_HEALTH: "lambda.unsupported_event",
    }
    for index, log_event in expected.items():
        result = environment.results[index]
        assert result["statusCode"] == 400
        assert result["headers"] == {"content-type": "application/json"}
        assert environment.body(index)["error"]["code"] == "UNSUPPORTED_EVENT"
        assert environment.events_of(index) == [log_event]
    # An HTTP event's markers without its fields: Mangum cannot read it, and says so through a 400 too.
    assert environment.results[MALFORMED]["statusCode"] == 400
    assert environment.body(MALFORMED)["error"]["code"] == "MALFORMED_EVENT"
    assert environment.events_of(MALFORMED) == ["lambda.malformed_event"]
    [line] = environment.lines_of(UNKNOWN)
    assert line["level"] == "WARNING"
    assert line["extra"]["event"] == {"type": "dict", "keys": ["hello"]}  # keys only: values may be secrets


def test_log_lines_carry_the_lambda_context_and_nothing_from_earlier_invocations(environment: Environment) -> None:
    assert all(line.get("function_request_id", "").startswith("req-") for line in environment.lines)
    for line in environment.lines:
        assert line["function_name"] == "pokemon-generate"
        assert line["cold_start"] is (line["function_request_id"] == "req-0")
    correlation_ids = {
        REST: event("apigateway-rest-generate")["requestContext"]["requestId"],
        HTTP: event("apigateway-http-generate")["requestContext"]["requestId"],
        ALB: event("alb-generate")["headers"]["x-amzn-trace-id"],
        SCHEDULED_ON_GENERATE: event("scheduled-event")["id"],
        SCHEDULER_ON_WARMUP: event("scheduler-event")["id"],
        HEALTH: event("apigateway-http-health")["requestContext"]["requestId"],
        # After a scheduled event: its id must not stick to an event that has none.
        NOT_AN_OBJECT: None,
    }
    for index, correlation_id in correlation_ids.items():
        lines = environment.lines_of(index)
        assert lines, index
        assert {line.get("correlation_id") for line in lines} == {correlation_id}, index
    # A request's own id is bound for that request only.
    request_ids = {line.get("request_id") for line in environment.lines_of(REST) + environment.lines_of(HTTP)}
    assert len(request_ids - {None}) == 2
    assert all("request_id" not in line for line in environment.lines_of(WARMUP))


def test_http_invocations_write_cloudwatch_metrics(environment: Environment) -> None:
    assert environment.metrics  # flushed before each handler returned
    for document in environment.metrics:
        directive = document["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "Pokemon"
        assert {metric["Name"] for metric in directive["Metrics"]} & {"Status2xx", "Status4xx"}
    assert any("GenerationLatency_files" in document for document in environment.metrics)


def test_every_invocation_runs_on_one_event_loop(environment: Environment) -> None:
    assert len({loop for loop, _ in environment.loops}) == 1
    assert not any(closed for _, closed in environment.loops)


def test_the_files_backend_imports_neither_torch_nor_diffusers(environment: Environment) -> None:
    assert environment.heavy_modules == []


# --- Settings that change what an invocation answers ---


def test_auth_through_lambda(tmp_path: Path) -> None:
    http, rest = event("apigateway-http-generate"), event("apigateway-rest-generate")
    steps = [
        Invocation("generate", http),
        Invocation("generate", with_headers(http, authorization=f"Bearer {TOKEN}")),
        Invocation("generate", with_headers(rest, Authorization="Bearer wrong")),
        Invocation("generate", with_headers(rest, Authorization=f"Bearer {TOKEN}")),
        Invocation("health", event("apigateway-http-health")),  # never behind auth
    ]
    env = run_environment(tmp_path, steps, POKEMON_BEARER_TOKEN=TOKEN)
    missing, allowed, wrong, allowed_rest, health = env.results
    assert missing["statusCode"] == 401
    assert missing["headers"]["www-authenticate"] == 'Bearer realm="pokemon"'
    assert env.body(0)["error"]["code"] == "UNAUTHORIZED"
    assert_creature(allowed)
    assert wrong["statusCode"] == 401
    assert wrong["headers"]["www-authenticate"] == 'Bearer realm="pokemon", error="invalid_token"'
    assert_creature(allowed_rest)
    assert health["statusCode"] == 200
    assert all(TOKEN not in json.dumps(line) for line in env.lines)


def test_rate_limit_through_lambda_keys_on_the_source_address(tmp_path: Path) -> None:
    http, alb = event("apigateway-http-generate"), event("alb-generate")
    client_ip = "72.12.164.125"
    steps = [
        Invocation("generate", from_address(http, "198.51.100.1")),
        Invocation("generate", from_address(http, "198.51.100.1")),
        Invocation("generate", from_address(http, "198.51.100.1")),
        Invocation("generate", from_address(http, "198.51.100.2")),  # another client: its own bucket
        # Behind an ALB the client is the hop it appended; what a caller wrote before it earns nothing.
        Invocation("generate", with_headers(alb, x_forwarded_for=f"203.0.113.1, {client_ip}")),
        Invocation("generate", with_headers(alb, x_forwarded_for=f"203.0.113.2, {client_ip}")),
        Invocation("generate", with_headers(alb, x_forwarded_for=f"203.0.113.3, {client_ip}")),
    ]
    env = run_environment(tmp_path, steps, POKEMON_RATE_LIMIT_PER_MIN="2")
    assert [result["statusCode"] for result in env.results] == [200, 200, 429, 200, 200, 200, 429]
    limited = env.results[2]
    assert int(limited["headers"]["retry-after"]) >= 1
    assert limited["headers"]["ratelimit-remaining"] == "0"
    assert env.body(2)["error"]["code"] == "RATE_LIMITED"
    assert env.results[6]["headers"]["retry-after"]
    responses = [line for line in env.lines if line["message"] == "http.response"]
    assert [line["extra"]["client"] for line in responses[4:]] == [client_ip] * 3


def multi_value(base: Mapping[str, Any], name: str, lines: list[str]) -> dict[str, Any]:
    """`base` as a target group with multi-value headers sends it, `name` holding `lines`."""
    changed = copy.deepcopy(dict(base))
    changed["multiValueHeaders"] = {key: [value] for key, value in changed.pop("headers").items()}
    changed["multiValueHeaders"][name] = lines
    return changed


def test_behind_an_alb_the_trusted_proxies_apply_as_on_a_server(tmp_path: Path) -> None:
    alb, http = event("alb-generate"), event("apigateway-http-generate")
    # A CDN at 10.0.0.7 in front of the ALB: the client is the hop the CDN appended, without its port.
    steps = [
        Invocation("generate", with_headers(alb, x_forwarded_for=f"1.2.3.{n}, 198.51.100.9:300{n}, 10.0.0.7"))
        for n in range(3)
    ]
    # A second line is the same list: the ALB's hop is the last of all lines, not of the first.
    steps += [Invocation("generate", multi_value(alb, "x-forwarded-for", ["6.6.6.6", "198.51.100.10"]))] * 3
    # API Gateway's source address is the peer: a trusted one is walked past too, with the IPv6 prefix.
    via_cdn = with_headers(from_address(http, "10.0.0.8"), x_forwarded_for="2001:db8:5:6::1")
    steps += [Invocation("generate", via_cdn), Invocation("generate", via_cdn)]
    other = with_headers(from_address(http, "10.0.0.8"), x_forwarded_for="2001:db8:5:6::2")
    steps += [Invocation("generate", other)]
    env = run_environment(tmp_path, steps, POKEMON_RATE_LIMIT_PER_MIN="2", POKEMON_TRUSTED_PROXIES="10.0.0.0/8")
    assert [result["statusCode"] for result in env.results] == [200, 200, 429, 200, 200, 429, 200, 200, 429]
    responses = [line["extra"]["client"] for line in env.lines if line["message"] == "http.response"]
    assert responses == ["198.51.100.9"] * 3 + ["198.51.100.10"] * 3 + ["2001:db8:5:6::1"] * 2 + ["2001:db8:5:6::2"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("POKEMON_RATE_LIMIT_PER_MIN", "lots"),
        ("POKEMON_IMAGES_DIR", "/nonexistent/images"),
        # Powertools once parsed LOG_LEVEL itself when the handler module was imported, and raised.
        ("LOG_LEVEL", "VERBOSE"),
        ("POKEMON_RARITY_WEIGHTS", "F=1e308,E=1e308,D=0,C=0,B=0,A=0,S=0,S+=1"),
    ],
    ids=["bad-setting", "missing-images", "bad-log-level", "overflowing-weights"],
)
def test_a_configuration_error_answers_500_with_one_log_line(tmp_path: Path, setting: str, value: str) -> None:
    steps = [
        Invocation("generate", event("apigateway-http-generate")),
        Invocation("generate", event("scheduled-event")),
        Invocation("health", event("apigateway-rest-generate")),
    ]
    env = run_environment(tmp_path, steps, **{setting: value})
    for index, result in enumerate(env.results):
        assert result["statusCode"] == 500
        assert env.body(index)["error"]["code"] == "INTERNAL_ERROR"
        [line] = env.lines_of(index)  # every invocation says why, in one line
        assert line["message"] == "lambda.config_error"
        assert line["level"] == "ERROR"
        assert line["extra"]["variable"] == setting


def test_background_name_workers_live_on_the_invocations_loop(tmp_path: Path, llm: FakeLLM) -> None:
    """The name pool's workers start when the environment boots; a later request must get their names."""
    steps = [
        Invocation("warmup", event("scheduled-event")),
        Invocation("generate", event("apigateway-http-generate")),
        Invocation("generate", event("apigateway-http-generate")),
    ]
    env = run_environment(
        tmp_path,
        steps,
        POKEMON_NAME_BACKEND="remote",
        OPENAI_BASE_URL=llm.base_url,
        POKEMON_NAME_WAIT_MS="10000",  # wait for the workers rather than fall back to a local name
    )
    assert env.results[0]["warmed"] is True
    for index in (1, 2):
        body = assert_creature(env.results[index])
        assert body["metadata"]["nameSource"] == "remote"
    assert llm.stats()
