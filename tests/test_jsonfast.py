"""The hot-path JSON encoder writes exactly what `json.dumps` would."""

from __future__ import annotations

import collections
import datetime
import json
import uuid
from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.jsonfast import compact_json

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_same_text_as_json_dumps(value: Any) -> None:
    assert compact_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def test_unknown_objects_are_written_as_text() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    assert compact_json({"x": Thing()}) == '{"x":"a thing"}'


class Colour(Enum):
    RED = "red"


class Tier(StrEnum):
    S_PLUS = "S+"


class Level(IntEnum):
    HIGH = 3


class Renamed(str, Enum):  # noqa: UP042 - not a StrEnum: its members' text and value differ on purpose
    """A str-based enum whose value is not its own text."""

    A = "a"

    def __new__(cls, value: str) -> Renamed:
        member = str.__new__(cls, "text")
        member._value_ = value
        return member


class Text(str):
    pass


@dataclass
class Point:
    x: int


# Values orjson (the fast path) writes differently from json.dumps, or refuses: each must still come out
# exactly as json.dumps writes it.
AWKWARD: list[object] = [
    1e-05,
    -6.5e-05,
    1e-09,
    9.999999999999999e-05,
    float("nan"),
    float("inf"),
    -float("inf"),
    2**64,
    -(2**70),
    "lone \ud800 surrogate",
    {1: "int key"},
    {None: 1, 2.5: 2, True: 3},
    Colour.RED,
    Tier.S_PLUS,
    Level.HIGH,
    Renamed.A,
    Text("a str subclass"),
    Point(1),
    datetime.datetime(2025, 11, 12, 20, 41, 32, tzinfo=datetime.UTC),
    datetime.date(2025, 11, 12),
    uuid.UUID(int=7),
    {1, 2},
    b"bytes",
    collections.OrderedDict(a=1),
    'control \x00\x1f\x7f\b\f\n\r\t "quoted" \\ é ☃ \u2028',
    [1e-300, 1e300, 1e16, 1e-4, 0.0001, -0.0, 5e-324],
]


@pytest.mark.parametrize("value", AWKWARD, ids=repr)
def test_awkward_values_come_out_as_json_dumps_writes_them(value: object) -> None:
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    assert compact_json(value) == expected
    assert compact_json({"nested": [value, {"deeper": value}]}) == json.dumps(
        {"nested": [value, {"deeper": value}]}, ensure_ascii=False, separators=(",", ":"), default=str
    )


@given(st.floats())
def test_every_float_as_json_dumps_writes_it(value: float) -> None:
    assert compact_json([value]) == json.dumps([value], ensure_ascii=False, separators=(",", ":"))
