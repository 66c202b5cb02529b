"""One event, one line: characters that would break a line, or act on a terminal, never reach it raw.

A client writes the path, the query and some headers, so any logged value may hold CR, LF, ESC or one of
the separators `str.splitlines()` also splits on (\\x1c-\\x1e, \\x85, U+2028, U+2029).

- JSON lines: both encoders (orjson, `json.dumps`) escape everything below 0x20, but neither escapes DEL,
  the C1 range (\\x85 among it) or U+2028/U+2029. `json_safe` writes those as `\\uXXXX` too, which is the
  same JSON value, so every line is one whole object however a reader splits it.
- Text lines: a value with anything `str.isprintable()` refuses (controls, separators, format characters
  such as bidi overrides), a space, `=` or `"` is quoted, and inside the quotes the non-printable
  characters are written as `\\n`, `\\r`, `\\t`, `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`.
"""

from __future__ import annotations

import re

# DEL, C1 and the two Unicode separators: the characters the JSON encoders leave raw that matter here.
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", '"': '\\"'}
# For a printable value, the quoting `json.dumps(value, ensure_ascii=False)` does: the existing lines keep
# their exact text.
_QUOTE_ONLY = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _unicode_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_safe(text: str) -> str:
    """JSON text with DEL, C1, U+2028 and U+2029 escaped as `\\uXXXX`: the same value, on one line."""
    # isascii() reads a flag CPython keeps on every string: ordinary lines pay that and one scan for DEL.
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_RAW.sub(_unicode_escape, text)


def _escape_character(character: str) -> str:
    short = _SHORT_ESCAPES.get(character)
    if short is not None:
        return short
    if character.isprintable():
        return character
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """`text` with its non-printable characters (and `\\`, `"`) escaped; unchanged when all are printable."""
    if text.isprintable():
        return text
    return "".join(map(_escape_character, text))


def text_value(value: str) -> str:
    """A string as a text line shows it: bare when it is plainly one word, else quoted and escaped."""
    if value.isprintable():
        if value and " " not in value and "=" not in value and '"' not in value:
            return value
        return f'"{value.translate(_QUOTE_ONLY)}"'
    return f'"{"".join(map(_escape_character, value))}"'
