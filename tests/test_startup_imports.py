"""What a start-up imports: building the app leaves the OpenAPI document's models unloaded, and a Lambda cold
start imports only what it serves with (each import there is milliseconds of every cold start)."""

from __future__ import annotations

import json

from tests.support.paths import SHIPPED_IMAGES
from tests.support.python_child import python_ok

# A fresh interpreter builds the app (and, for the Lambda entry point, serves one request): what that imports is
# what every start-up pays for, a cold start above all.
STARTUP = """
import json, sys
{body}
print(json.dumps(sorted(sys.modules)))
"""
BUILD_APP = "from handlers.api import create_app\ncreate_app()"
LAMBDA_INVOKE = """
from handlers.generate import handler
class Context:
    function_name = "pokemon-generate"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pokemon-generate"
    aws_request_id = "req-1"
with open("infra/events/apigateway-http-generate.json", encoding="utf-8") as event:
    assert handler(json.load(event), Context())["statusCode"] == 200
"""
# Never on these paths: the document's models and FastAPI's pydantic-v1 check, what only remote names, the
# server, its TLS helper or its /metrics need, and the libraries of backends the default settings do not choose
# (a shared Redis, a DynamoDB table, a diffusion model).
NOT_AT_START_UP = {"handlers.openapi", "pydantic.v1", "pydantic_settings", "httpx", "rich", "uvicorn"} | {
    "redis",
    "boto3",
    "torch",
    "diffusers",
    "transformers",
}
NOT_ON_LAMBDA = NOT_AT_START_UP | {"prometheus_client", "cryptography", "PIL.JpegImagePlugin", "PIL.GifImagePlugin"}


def modules_after(body: str) -> set[str]:
    completed = python_ok("-c", STARTUP.format(body=body), POKEMON_IMAGES_DIR=str(SHIPPED_IMAGES), LOG_LEVEL="ERROR")
    return set(json.loads(completed.stdout.splitlines()[-1]))


def test_building_the_app_leaves_the_document_unbuilt() -> None:
    loaded = modules_after(BUILD_APP)
    assert "handlers.api" in loaded
    assert loaded.isdisjoint(NOT_AT_START_UP), loaded & NOT_AT_START_UP


def test_a_lambda_cold_start_imports_only_what_it_serves_with() -> None:
    loaded = modules_after(LAMBDA_INVOKE)
    assert "handlers.lambda_runtime" in loaded
    assert loaded.isdisjoint(NOT_ON_LAMBDA), loaded & NOT_ON_LAMBDA
