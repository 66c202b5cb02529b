"""The raw image through Lambda: Mangum hands it back base64-encoded with `isBase64Encoded: true` for API Gateway's
HTTP API (payload 2.0), its REST API (1.0) and an ALB, from the sample events in infra/events.

One execution environment (a fresh interpreter calling `handlers.generate.handler` as Lambda does) serves every
invocation in turn.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.paths import REPO, SHIPPED_IMAGES
from tests.support.python_child import python_ok

EVENTS = REPO / "infra" / "events"

RUNNER = """
import json, sys
from handlers.generate import handler

class Context:
    function_name = "pokemon-generate"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pokemon-generate"
    aws_request_id = "req-1"

results = [handler(event, Context()) for event in json.load(sys.stdin)]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump(results, out)
"""


def event(name: str, *, accept: str | None = None, query: dict[str, str] | None = None) -> dict[str, Any]:
    """A sample event with another `Accept` and query, written where each kind of event carries them."""
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    changed = copy.deepcopy(loaded)
    if accept is not None:
        for key in list(changed["headers"]):
            if key.lower() == "accept":
                del changed["headers"][key]
        changed["headers"]["accept"] = accept
        if changed.get("multiValueHeaders"):
            changed["multiValueHeaders"] = {k: v for k, v in changed["multiValueHeaders"].items() if k != "Accept"}
            changed["multiValueHeaders"]["accept"] = [accept]
    if query is not None:
        if changed.get("version") == "2.0":
            changed["rawQueryString"] = "&".join(f"{key}={value}" for key, value in query.items())
        changed["queryStringParameters"] = dict(query)
        if "multiValueQueryStringParameters" in changed:
            changed["multiValueQueryStringParameters"] = {key: [value] for key, value in query.items()}
    return changed


STEPS: list[tuple[str, dict[str, Any]]] = [
    ("http image sample", event("apigateway-http-generate-image")),
    ("http json", event("apigateway-http-generate", query={"seed": "42", "size": "128", "format": "webp"})),
    ("rest image", event("apigateway-rest-generate", accept="image/jpeg", query={"seed": "42", "size": "96"})),
    ("alb image", event("alb-generate", accept="image/png", query={"seed": "42", "format": "webp", "size": "64"})),
    ("http bad size", event("apigateway-http-generate", accept="image/png", query={"size": "4096"})),
    ("rest bad format", event("apigateway-rest-generate", accept="image/png", query={"format": "bmp"})),
    ("http default", event("apigateway-http-generate")),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("lambda-binary") / "results.json"
    completed = python_ok(
        "-c",
        RUNNER,
        str(out),
        stdin=json.dumps([step for _, step in STEPS]),
        POKEMON_IMAGES_DIR=str(SHIPPED_IMAGES),
        POKEMON_RATE_LIMIT_PER_MIN="0",
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    return dict(zip((name for name, _ in STEPS), json.loads(out.read_text(encoding="utf-8")), strict=True))


def headers_of(result: dict[str, Any]) -> dict[str, str]:
    """Single-value headers, whichever of the two fields the adapter wrote them in."""
    found = {key: values[-1] for key, values in (result.get("multiValueHeaders") or {}).items()}
    found.update(result.get("headers") or {})
    return {key.lower(): value for key, value in found.items()}


def image_of(result: dict[str, Any]) -> Image.Image:
    assert result["statusCode"] == 200, result
    assert result["isBase64Encoded"] is True
    image = Image.open(io.BytesIO(base64.b64decode(result["body"], validate=True)))
    image.load()
    return image


@pytest.mark.parametrize(
    ("step", "content_type", "size"),
    [
        ("http image sample", "image/webp", (128, 128)),
        ("rest image", "image/jpeg", (96, 96)),
        ("alb image", "image/webp", (64, 64)),  # format= wins over the Accept subtype
    ],
)
def test_raw_images_come_back_base64_encoded(
    results: dict[str, dict[str, Any]], step: str, content_type: str, size: tuple[int, int]
) -> None:
    result = results[step]
    image = image_of(result)
    headers = headers_of(result)
    assert headers["content-type"] == content_type
    assert image.format == content_type.removeprefix("image/").upper() and image.size == size
    assert headers["vary"] == "Accept"
    assert headers["x-creature-seed"] == "42" and headers["x-creature-id"].startswith("pkm_")
    assert headers["x-creature-image-source"] == "files"


def test_the_same_creature_as_json_is_the_same_image(results: dict[str, dict[str, Any]]) -> None:
    raw, as_json = results["http image sample"], results["http json"]
    assert as_json["isBase64Encoded"] is False
    body = json.loads(as_json["body"])
    assert body["metadata"]["imageFormat"] == "webp" and body["metadata"]["imageWidth"] == 128
    assert base64.b64decode(body["imageBase64"]) == base64.b64decode(raw["body"])
    assert headers_of(raw)["x-creature-name"] == body["metadata"]["name"].replace("'", "%27")


@pytest.mark.parametrize(("step", "allowed"), [("http bad size", "32 to 2048"), ("rest bad format", "png, webp")])
def test_errors_are_json_text_even_for_an_image_accept(
    results: dict[str, dict[str, Any]], step: str, allowed: str
) -> None:
    result = results[step]
    assert result["statusCode"] == 422 and result["isBase64Encoded"] is False
    assert headers_of(result)["content-type"] == "application/json"
    error = json.loads(result["body"])["error"]
    assert error["code"] == "INVALID_REQUEST" and allowed in error["message"]


def test_the_default_stays_json(results: dict[str, dict[str, Any]]) -> None:
    result = results["http default"]
    assert result["statusCode"] == 200 and result["isBase64Encoded"] is False
    assert headers_of(result)["vary"] == "Accept"
    assert json.loads(result["body"])["metadata"]["imageFormat"] == "png"


def test_the_template_serves_binary_answers() -> None:
    """The template's API is an HTTP API, which returns `isBase64Encoded` bodies as binary by itself; a REST API
    would need BinaryMediaTypes for the image types, so the template must not declare one without them."""
    template = (REPO / "template.yaml").read_text(encoding="utf-8")
    assert "AWS::Serverless::HttpApi" in template
    if "AWS::Serverless::Api\n" in template or "AWS::ApiGateway::RestApi" in template:
        for media_type in ("image~1png", "image~1webp", "image~1jpeg"):
            assert media_type in template


def test_the_image_sample_event_asks_for_an_image() -> None:
    sample = json.loads(Path(EVENTS / "apigateway-http-generate-image.json").read_text(encoding="utf-8"))
    assert sample["headers"]["accept"] == "image/webp"
    assert "size=128" in sample["rawQueryString"]
