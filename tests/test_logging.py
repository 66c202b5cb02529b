"""Log lines, byte for byte: golden files of the JSON and text formats, and no secrets in them.

The golden scenario runs on the default app with FastAPI's own `GET /v1/generate` route made to fail, so the
lines it pins are the bare endpoint's (the hot path); the routed app is checked against the same file.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from core import wiring
from core.config import load_settings
from core.eventlog import bind_context, configure_logging, flush_logs, log, unbind_context
from core.rarity import RarityTable
from core.service import CreatureService
from handlers.api import create_app
from tests.support.paths import REPO

GOLDEN = Path(__file__).parent / "golden"
FIXED_TIME = 1762980092.0  # 2025-11-12T20:41:32Z


def _normalise(text: str) -> str:
    # Durations are the one thing a run cannot fix; everything else must match exactly.
    text = re.sub(r'"duration_ms":[0-9.]+', '"duration_ms":0', text)
    return re.sub(r"duration_ms=[0-9.]+", "duration_ms=0", text)


async def _router_must_not_serve(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("FastAPI's router served GET /v1/generate")


def _without_the_routers_generate(app: FastAPI) -> None:
    """A `GET /v1/generate` reaching the router now fails (`http.unhandled`, 500): only the bare endpoint logs right."""
    routes = [route for route in app.router.routes if isinstance(route, APIRoute) and route.path == "/v1/generate"]
    assert len(routes) == 1
    routes[0].app = _router_must_not_serve


def _capture(json_lines: bool, monkeypatch: pytest.MonkeyPatch, *, hot_path: bool = True) -> str:
    monkeypatch.chdir(REPO)
    stream = io.StringIO()
    configure_logging(level="INFO", json_lines=json_lines, stream=stream, background=False, clock=lambda: FIXED_TIME)
    try:
        settings = load_settings(images_dir=Path("pokemon"), bearer_token="golden-token", rate_limit_per_min=2)
        service = CreatureService(
            names=wiring.build_name_source(settings),
            images=wiring.build_image_source(settings),
            rarity=RarityTable(settings.rarity_weights),
            clock=lambda: FIXED_TIME,
            new_id=lambda: "pkm_GOLDEN000001",
        )
        app = create_app(settings, service=service, hot_path=hot_path)
        if hot_path:
            _without_the_routers_generate(app)

        async def scenario() -> None:
            transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                good = {"Authorization": "Bearer golden-token"}
                await client.get("/v1/generate", params={"seed": 7}, headers={**good, "X-Request-ID": "req-1"})
                await client.get("/v1/generate", headers={"Authorization": "Bearer wrong", "X-Request-ID": "req-2"})
                await client.get("/v1/generate", params={"seed": "x"}, headers={**good, "X-Request-ID": "req-3"})
                await client.get("/v1/generate", params={"seed": 8}, headers={**good, "X-Request-ID": "req-4"})
                await client.get("/v1/generate", params={"seed": 9}, headers={**good, "X-Request-ID": "req-5"})
                await client.get("/health", headers={"X-Request-ID": "req-6"})

        asyncio.run(scenario())
        log.info("remote_name.ok", name="Khra'gzathon")
        flush_logs()
        return _normalise(stream.getvalue())
    finally:
        configure_logging(stream=io.StringIO(), background=False)


@pytest.mark.parametrize(("json_lines", "golden"), [(True, "events.jsonl"), (False, "events.txt")])
def test_log_lines_match_the_golden_file(json_lines: bool, golden: str, monkeypatch: pytest.MonkeyPatch) -> None:
    captured = _capture(json_lines, monkeypatch)
    path = GOLDEN / golden
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(captured, encoding="utf-8")
    assert captured == path.read_text(encoding="utf-8")
    assert "golden-token" not in captured


def test_the_router_writes_the_lines_the_hot_path_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    routed = _capture(True, monkeypatch, hot_path=False)
    assert routed == (GOLDEN / "events.jsonl").read_text(encoding="utf-8")


def test_json_lines_have_the_description_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in _capture(True, monkeypatch).splitlines():
        entry = json.loads(line)
        assert list(entry)[:4] == ["ts", "level", "logger", "message"]
        assert entry["ts"] == "2025-11-12T20:41:32Z"
        assert isinstance(entry["extra"], dict)


def test_log_level_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure_logging(level="WARNING", stream=stream, background=False)
    try:
        log.info("quiet.event")
        log.warning("loud.event", detail=1)
        flush_logs()
    finally:
        configure_logging(stream=io.StringIO(), background=False)
    assert "quiet.event" not in stream.getvalue()
    assert "loud.event" in stream.getvalue()


def test_exceptions_are_logged_by_type_without_a_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, background=False)
    try:
        try:
            raise ValueError("/internal/path/secret")
        except ValueError:
            log.logger.exception("boom")
        flush_logs()
    finally:
        configure_logging(stream=io.StringIO(), background=False)
    line = json.loads(stream.getvalue())
    assert line["extra"]["exception"] == "ValueError"
    assert "Traceback" not in stream.getvalue()
    assert "/internal/path" not in stream.getvalue()


def test_background_writer_delivers_every_line_in_order() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream, background=True)
    try:
        for index in range(2000):
            log.info("bulk.event", index=index)
        flush_logs()
    finally:
        configure_logging(stream=io.StringIO(), background=False)
    indexes = [json.loads(line)["extra"]["index"] for line in stream.getvalue().splitlines()]
    assert indexes == list(range(2000))


def test_the_direct_path_and_the_logging_machinery_write_the_same_line() -> None:
    def capture() -> str:
        stream = io.StringIO()
        configure_logging(stream=stream, background=False, clock=lambda: FIXED_TIME)
        token = bind_context(request_id="r-1")
        try:
            log.info("generate.success", name="Khra'gzathon", rarity="S+", seed=3, nested={"a": [1, 2]})
        finally:
            unbind_context(token)
        flush_logs()
        return stream.getvalue()

    direct = capture()
    stdlib_logger = logging.getLogger("pokemon")
    extra_filter = logging.Filter()  # any filter sends lines through LogRecords instead
    stdlib_logger.addFilter(extra_filter)
    try:
        through_records = capture()
    finally:
        stdlib_logger.removeFilter(extra_filter)
        configure_logging(stream=io.StringIO(), background=False)
    assert direct == through_records
    assert json.loads(direct)["request_id"] == "r-1"
