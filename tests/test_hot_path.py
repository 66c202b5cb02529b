"""The default app serves `GET /v1/generate` from the bare endpoint, which answers like the FastAPI route, byte for
byte but for id and time."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from core.config import load_settings
from core.creature import parse_seed
from core.errors import InvalidRequest
from handlers.api import create_app
from handlers.errors import answer_for
from tests.support.paths import SHIPPED_IMAGES

CASES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"seed": "42"}, {"Authorization": "Bearer tok"}),
    ({}, {"Authorization": "Bearer tok"}),
    ({"seed": "-1"}, {"Authorization": "Bearer tok"}),
    ({"seed": "42"}, {}),
    ({"seed": "42"}, {"Authorization": "Bearer wrong"}),
    ({"seed": "1", "other": "x"}, {"Authorization": "Bearer tok"}),
    ({"seed": "2"}, {"Authorization": "Bearer tok"}),  # the third admitted call: rate limited
]


def _answers(hot_path: bool) -> list[tuple[int, dict[str, str], str]]:
    settings = load_settings(images_dir=SHIPPED_IMAGES, bearer_token="tok", rate_limit_per_min=3)
    app = create_app(settings, hot_path=hot_path)

    async def run() -> list[tuple[int, dict[str, str], str]]:
        transport = httpx.ASGITransport(app=app)
        answers = []
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for params, headers in CASES:
                response = await client.get("/v1/generate", params=params, headers=headers)
                # Ids differ per call and unseeded calls draw seeds of different lengths.
                kept = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "content-length")}
                assert int(response.headers["content-length"]) == len(response.content)
                body = re.sub(r'"(id|generatedAt)":"[^"]+"', r'"\1":"-"', response.text)
                body = re.sub(r'"seed":\d+', '"seed":0', body) if "seed" not in params else body
                answers.append((response.status_code, kept, body))
        return answers

    return asyncio.run(run())


def test_hot_path_and_router_answer_alike() -> None:
    hot, routed = _answers(True), _answers(False)
    assert [status for status, _, _ in hot] == [200, 200, 422, 401, 401, 200, 429]
    for (hot_status, hot_headers, hot_body), (status, headers, body) in zip(hot, routed, strict=True):
        assert hot_status == status
        assert hot_headers == headers
        if status != 200 or '"seed":0' not in body:
            assert hot_body == body
    assert json.loads(hot[0][2])["metadata"]["seed"] == 42


async def _teapot(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _with_the_routers_generate_replaced(app: FastAPI) -> FastAPI:
    """Any `GET /v1/generate` that reaches FastAPI's router now gets 418: only the bare endpoint can answer 200."""
    routes = [route for route in app.router.routes if isinstance(route, APIRoute) and route.path == "/v1/generate"]
    assert len(routes) == 1
    routes[0].app = _teapot
    return app


def _status_of_generate(app: FastAPI) -> int:
    async def run() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return (await client.get("/v1/generate", params={"seed": "42"})).status_code

    return asyncio.run(run())


def test_the_default_app_serves_generate_from_the_bare_endpoint() -> None:
    settings = load_settings(images_dir=SHIPPED_IMAGES, rate_limit_per_min=0)
    default = _with_the_routers_generate_replaced(create_app(settings))
    routed = _with_the_routers_generate_replaced(create_app(settings, hot_path=False))
    assert _status_of_generate(default) == 200
    assert _status_of_generate(routed) == 418  # the replacement is what the router serves when asked


@pytest.mark.parametrize("raw", ["0", "42", str(2**63 - 1), "0007"])
def test_seeds_in_plain_digits(raw: str) -> None:
    assert parse_seed(raw) == int(raw)


@pytest.mark.parametrize("raw", ["", "-1", "+1", "1.0", "1_0", " 1", "١", str(2**63), "9" * 30])
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_seed(raw)
    assert answer_for(caught.value).status_code == 422
