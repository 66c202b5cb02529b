"""The OpenAPI document: an operation id per operation for generated clients, `X-Request-ID` documented on
every answer, and the document built only when asked for."""

from __future__ import annotations

import re
from typing import Any

import pytest

from core.config import load_settings
from handlers.api import create_app
from handlers.middleware import REQUEST_ID_PATTERN
from tests.support.paths import SHIPPED_IMAGES

OPERATION_IDS = {
    ("/v1/generate", "get"): "generateCreature",
    ("/health", "get"): "getHealth",
    ("/health/ready", "get"): "getReadiness",
}


def document(**settings: Any) -> dict[str, Any]:
    app = create_app(load_settings(images_dir=SHIPPED_IMAGES, **settings))
    schema: dict[str, Any] = app.openapi()
    return schema


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): operation for path, item in schema["paths"].items() for method, operation in item.items()}


@pytest.mark.parametrize("settings", [{}, {"bearer_token": "tok"}], ids=["open", "auth"])
def test_every_operation_has_its_own_operation_id(settings: dict[str, Any]) -> None:
    found = {key: operation["operationId"] for key, operation in operations(document(**settings)).items()}
    assert found == OPERATION_IDS
    assert len(set(found.values())) == len(found)
    assert all(re.fullmatch(r"[a-z][A-Za-z]+", operation_id) for operation_id in found.values())


def test_every_answer_documents_the_request_id_header() -> None:
    for (path, method), operation in operations(document()).items():
        assert operation["responses"], (path, method)
        for status, response in operation["responses"].items():
            header = response["headers"]["X-Request-ID"]
            assert header["required"] is True, (path, status)
            assert header["schema"] == {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"}
            assert "X-Request-ID" in header["description"]


def test_every_operation_takes_a_request_id_and_says_what_is_echoed() -> None:
    for operation in operations(document()).values():
        [parameter] = [p for p in operation["parameters"] if p["name"] == "X-Request-ID"]
        assert parameter["in"] == "header" and parameter["required"] is False
        assert parameter["schema"] == {"type": "string"}  # any value is taken: an unusable one is replaced
        assert REQUEST_ID_PATTERN in parameter["description"]


def test_the_documented_pattern_is_what_the_service_echoes() -> None:
    pattern = re.compile(f"^{REQUEST_ID_PATTERN}$")
    assert pattern.match("abc-123.X:y_z") and pattern.match("a" * 128)
    assert not pattern.match("a" * 129) and not pattern.match("<script>") and not pattern.match("")


def test_the_existing_descriptions_are_kept() -> None:
    schema = document(bearer_token="tok")
    generate = schema["paths"]["/v1/generate"]["get"]
    assert generate["summary"] == "Generate a creature" and generate["tags"] == ["creatures"]
    assert generate["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreatureBody"
    }
    assert {
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "X-Request-ID",
    } <= set(generate["responses"]["200"]["headers"])
    assert [p["name"] for p in generate["parameters"]] == ["seed", "format", "size", "X-Request-ID"]
    assert generate["security"] == [{"bearer": []}]
    assert schema["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    ready = schema["paths"]["/health/ready"]["get"]["responses"]["503"]
    assert ready["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ReadyBody"}
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", schema["info"]["version"])


def test_the_document_is_built_when_first_asked_for() -> None:
    app = create_app(load_settings(images_dir=SHIPPED_IMAGES))
    assert app.openapi_schema is None
    assert app.openapi() is app.openapi() is app.openapi_schema
