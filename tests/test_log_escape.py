"""The escaping that keeps one event on one line (core/eventlog/escape.py), as pure functions."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.eventlog.escape import escape_text, json_safe, text_value
from core.eventlog.formatter import EventFormatter
from core.jsonfast import compact_json

BREAKERS = "\r\n\t\x0b\x0c\x1b\x1c\x1d\x1e\x7f\x85\x9b\u2028\u2029"


@given(
    st.recursive(
        st.text() | st.integers() | st.none(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)
    )
)
def test_json_safe_is_the_same_value_on_one_line(value: object) -> None:
    line = json_safe(compact_json(value))
    assert len(line.splitlines()) <= 1
    assert json.loads(line) == value
    assert not any(character in line for character in "\x7f\x85\x9b\u2028\u2029")


def test_json_safe_leaves_ordinary_text_alone() -> None:
    for text in ('{"name":"Khra\'gzathon"}', '{"reason":"0 ≤ seed < 2^63"}', ""):
        assert json_safe(text) is text


@given(st.text())
def test_a_text_value_is_one_printable_word_or_a_quoted_string(value: str) -> None:
    shown = text_value(value)
    assert shown.isprintable() or not value
    assert len(f"x={shown}".splitlines()) == 1
    if shown.startswith('"'):
        assert shown.endswith('"') and len(shown) >= 2
    else:
        assert shown == value and " " not in shown and "=" not in shown


@given(st.text().filter(str.isprintable))
def test_printable_values_are_quoted_as_before(value: str) -> None:
    # The lines that held no control character keep their exact text (the golden files pin them too).
    if value and " " not in value and "=" not in value and '"' not in value:
        assert text_value(value) == value
    else:
        assert text_value(value) == json.dumps(value, ensure_ascii=False)


def test_control_characters_are_written_as_escapes() -> None:
    assert text_value("/a\r\nb") == '"/a\\r\\nb"'
    assert text_value("\x1b[31mred") == '"\\x1b[31mred"'
    assert text_value("x\u2028y\u2029z\x85") == '"x\\u2028y\\u2029z\\x85"'
    assert text_value("tab\there\x7f") == '"tab\\there\\x7f"'
    assert escape_text("Uvicorn running") == "Uvicorn running"
    assert escape_text("evil\nline") == "evil\\nline"
    assert all(escape_text(character).isprintable() for character in BREAKERS)


@pytest.mark.parametrize("json_lines", [True, False])
@pytest.mark.parametrize("secret", ["tok-Zq8LmN3pX7vR2sW5", 'a"quote\\d', "level", "new\nline"])
def test_a_masked_secret_never_shows_and_the_line_stays_whole(json_lines: bool, secret: str) -> None:
    formatter = EventFormatter(json_lines=json_lines)
    formatter.mask(secret)
    line = formatter.render(0.0, "INFO", "pokemon", "http.request", {"path": f"/{secret}", "q": [secret, "x"]})
    assert len(line.splitlines()) == 1
    if json_lines:
        entry = json.loads(line)
        assert secret not in json.dumps(entry, ensure_ascii=False).replace('"level"', "")
        assert entry["extra"]["path"] == "/***"
    else:
        assert secret not in line
