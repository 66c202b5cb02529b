"""Compact JSON for the hot path: log lines and creature metadata.

`compact_json(value)` is exactly `json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)`.
Like `json.dumps`, it leaves DEL, C1 (\x85) and U+2028/U+2029 raw: valid JSON, and API answers keep those
exact bytes; log lines escape them on top (`core/eventlog/escape.py`), as a line must not split on them.
orjson writes the usual values (text, numbers, mappings of them) several times faster than the standard
library; the few it writes differently go to the standard encoder instead:

- anything but `str`, `int`, `bool`, `None`, `float`, `dict` with `str` keys, `list` and `tuple`, and
  subclasses of `str` and `int` (dataclasses, datetimes, sets, other mappings: `default=str` decides);
- enums whose value is not their own text or number (orjson writes the value, the standard library
  `str(member)`), e.g. any enum not based on `str` or `int`;
- integers beyond 64 bits and strings with lone surrogates, which orjson refuses;
- floats it writes otherwise: nan and infinities (orjson: `null`), and those in [1e-9, 1e-4) (`0.00001`
  or `1e-9` where Python writes `1e-05`, `1e-09`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum

import orjson

# Types orjson writes exactly as the standard encoder does; `_learn` adds the subclasses of `str` and `int`
# (enums among them) that it meets. Floats are checked one by one (`_float_agrees`).
_SCALARS: set[type] = {str, int, bool, type(None)}
# orjson writes floats in [1e-9, 1e-4) otherwise than the standard library (see above).
_FLOATS_DIFFER_FROM = 1e-9
_FLOATS_DIFFER_UP_TO = 1e-4


def _standard_encoder() -> Callable[[object], str]:
    # `json.dumps` with non-default options builds a new C encoder on every call — a third of the cost of
    # encoding a log line. Building it once gives the same output for the price of the encoding alone.
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    encode_chunks = make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def encode(value: object) -> str:
        return "".join(encode_chunks(value, 0))

    return encode


_standard = _standard_encoder()


def _orjson_agrees(value: object) -> bool:
    """Whether orjson writes `value` exactly as the standard encoder would (see the module's list)."""
    kind = type(value)
    if kind is dict:
        # A log line's fields, usually: checked here item by item, a call only for what is not a scalar.
        scalars = _SCALARS
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                return False
            item_kind = type(item)
            if item_kind in scalars:
                continue
            if item_kind is float:
                if not _float_agrees(item):
                    return False
            elif not _orjson_agrees(item):
                return False
        return True
    if kind in _SCALARS:
        return True
    if kind is float:
        return _float_agrees(value)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return all(_orjson_agrees(item) for item in value)  # type: ignore[attr-defined]
    return _learn(kind)


def _float_agrees(number: float) -> bool:
    magnitude = abs(number)
    # `magnitude - magnitude` is 0.0 for finite numbers only (nan and infinities give nan).
    return magnitude - magnitude == 0.0 and not (_FLOATS_DIFFER_FROM <= magnitude < _FLOATS_DIFFER_UP_TO)


def _learn(kind: type) -> bool:
    """Whether orjson writes values of this type as the standard encoder does; remembered when it does.

    Both write a subclass of `str` or `int` as its text or number, except that orjson writes an enum
    member's value: alike when every member's value is the member's own text or number (`StrEnum`, `IntEnum`).
    """
    if issubclass(kind, Enum):
        alike = issubclass(kind, (str, int)) and all(
            type(member._value_) in (str, int) and member._value_ == member for member in kind
        )
    else:
        alike = issubclass(kind, (str, int))
    if alike:
        _SCALARS.add(kind)  # types are few: the set stays small
    return alike


def compact_json(value: object) -> str:
    """`json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)`, for acyclic values."""
    if _orjson_agrees(value):
        try:
            text = orjson.dumps(value)
        except orjson.JSONEncodeError:  # an int beyond 64 bits, a lone surrogate
            return _standard(value)
        return text.decode()
    return _standard(value)
