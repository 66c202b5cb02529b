"""The hot-path JSON encoder writes exactly what `json.dumps` would."""

from __future__ import annotations

import json
from typing import Any

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
