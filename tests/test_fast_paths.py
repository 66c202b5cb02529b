"""The hot path's shortcuts write exactly what the plain code they replace would: log lines from cached parts,
raw rate-limit headers, the response in two parts, timestamps shared within a second."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.creature import Creature, EncodedImage, NameOrigin, Rarity, utc_timestamp
from core.eventlog import bind_context, unbind_context
from core.eventlog.formatter import EventFormatter
from core.jsonfast import compact_json
from core.ratelimit.bucket import TokenBucket

# --- log lines ---


def plain_line(ts: str, message: str, keys: dict[str, Any], extra: dict[str, Any]) -> str:
    """What a JSON line is: this dict, encoded."""
    return compact_json({"ts": ts, "level": "INFO", "logger": "pokemon", "message": message, **keys, "extra": extra})


FIELDS: list[dict[str, Any]] = [
    {},
    {"method": "GET", "path": "/v1/generate", "status": 200, "duration_ms": 0.123, "client": "127.0.0.1"},
    {"rarity": Rarity.S_PLUS, "nameSource": NameOrigin.REMOTE, "seed": 2**63 - 1, "ratio": 1e-05},
    {"nested": {"a": [1, None, "é"]}, "odd": {1, 2}, "message": "a field named like the line's own"},
]
BOUND: list[dict[str, Any]] = [
    {},
    {"request_id": "5f2c9a1e0b7d4c33"},
    {"request_id": "x", "cold_start": True, "function_memory_size": 1024},
    {"message": "a bound key named like a line field"},
    {"extra": "another"},
    {"ts": "and the time"},
]


@pytest.mark.parametrize("bound", BOUND, ids=repr)
def test_json_lines_are_the_dict_encoded(bound: dict[str, Any]) -> None:
    formatter = EventFormatter(clock=lambda: 1762980092.0)
    token = bind_context(**bound)
    try:
        for _ in range(2):  # the second round comes from the caches
            for fields in FIELDS:
                for message in ("generate.success", "http.response", 'odd "message"'):
                    line = formatter.render(0.0, "INFO", "pokemon", message, fields)
                    assert line == plain_line("2025-11-12T20:41:32Z", message, bound, fields)
    finally:
        unbind_context(token)


def test_appended_and_bound_keys_together_and_after_changes() -> None:
    formatter = EventFormatter(clock=lambda: 1762980092.0)
    ts, fields = "2025-11-12T20:41:32Z", {"status": 200}

    def line() -> str:
        return formatter.render(0.0, "INFO", "pokemon", "e", fields)

    formatter.append_keys(function_name="pokemon-generate", service="pokemon", cold_start=True)
    shown = {"function_name": "pokemon-generate", "cold_start": True}  # `service` is never shown
    assert line() == plain_line(ts, "e", shown, fields)
    token = bind_context(request_id="r1")
    try:
        assert line() == plain_line(ts, "e", {**shown, "request_id": "r1"}, fields)
        formatter.remove_keys(["cold_start"])
        assert line() == plain_line(ts, "e", {"function_name": "pokemon-generate", "request_id": "r1"}, fields)
    finally:
        unbind_context(token)
    formatter.clear_state()
    assert line() == plain_line(ts, "e", {}, fields)


# --- rate-limit headers ---


@given(
    capacity=st.integers(min_value=1, max_value=10**6),
    taken=st.integers(min_value=0, max_value=50),
    elapsed=st.floats(min_value=0, max_value=1e5, allow_nan=False),
)
def test_raw_rate_headers_are_the_headers_encoded(capacity: int, taken: int, elapsed: float) -> None:
    bucket = TokenBucket.per_minute(capacity)
    state = None
    for _ in range(taken):
        state, _ = bucket.take(state, 0.0)
    _, decision = bucket.take(state, elapsed)
    expected = [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in decision.headers().items()]
    assert decision.raw_headers() == expected


# --- the response in parts ---


def creature(image: EncodedImage) -> Creature:
    return Creature(
        id="pkm_MFXJZ23A4FGH",
        name="Khra'gzathon",
        rarity=Rarity.B,
        image=image,
        generated_at="2025-11-12T20:41:32Z",
        seed=5812337000194811234,
        name_origin=NameOrigin.LOCAL,
        extra={"note": "é"},
    )


def test_the_parts_make_the_whole_response_and_the_image_part_is_shared() -> None:
    image = EncodedImage(b"iVBORw0KGgo=", 512, 512, "files")
    head, rest = creature(image).to_json_parts()
    body = creature(image).to_json_bytes()
    assert head + rest == body
    assert json.loads(body) == {
        "imageBase64": "iVBORw0KGgo=",
        "metadata": {
            "id": "pkm_MFXJZ23A4FGH",
            "name": "Khra'gzathon",
            "rarity": "B",
            "seed": 5812337000194811234,
            "nameSource": "local",
            "imageSource": "files",
            "imageFormat": "png",
            "imageWidth": 512,
            "imageHeight": 512,
            "note": "é",
        },
        "generatedAt": "2025-11-12T20:41:32Z",
    }
    assert creature(image).to_json_parts()[0] is head  # built once per image
    assert image == EncodedImage(b"iVBORw0KGgo=", 512, 512, "files")  # the cache is not part of the value
    assert "_json_head" not in repr(image)


# --- timestamps ---


@pytest.mark.parametrize("epoch", [0, 0.999, -0.5, -1.0, 1762980092.0, 1762980092.7, 1762980093.0, 2**33 + 0.25])
def test_timestamps_match_strftime_whatever_came_before(epoch: float) -> None:
    for before in (epoch, math.floor(epoch) - 1, math.floor(epoch) + 1, epoch):
        utc_timestamp(before)
        assert utc_timestamp(epoch) == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
