"""Compact JSON for the hot path: log lines and creature metadata."""

from __future__ import annotations

import json
from collections.abc import Callable


def _compact_encoder() -> Callable[[object], str]:
    # `json.dumps` with non-default options builds a new C encoder on every call — a third of the cost of
    # encoding a log line. Building it once gives the same output for the price of the encoding alone.
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    encode_chunks = make_encoder(None, str, json.encoder.encode_basestring, None, ":", ",", False, False, True)

    def encode(value: object) -> str:
        return "".join(encode_chunks(value, 0))

    return encode


compact_json: Callable[[object], str] = _compact_encoder()
"""`json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)`, for acyclic values."""
