"""One event, one line: the product description's JSON shape, or readable text with `LOG_JSON=0`.

JSON lines look like `{"ts": "...Z", "level": "INFO", "logger": "pokemon", "message": "<event>", "extra": {...}}`.
Keys bound to the current request (`bind_context`) appear at the top level of every line it logs.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

from core.jsonfast import compact_json

SERVICE = "pokemon"

# Attributes every LogRecord has; whatever else a record carries came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Keys Powertools appends by itself that would only repeat `logger` or say nothing; uvicorn's ANSI copy.
_REDUNDANT_KEYS = frozenset({"service", "sampling_rate"})
_DROPPED_EXTRA = frozenset({"color_message"})
# Event fields travel under this one record attribute, so that names LogRecord reserves ("name",
# "message", ...) can still be field names, as in the description's `{"extra": {"name": ...}}`.
FIELDS_ATTRIBUTE = "event_fields"
_EVENT_RECORD_SIZE = len(logging.makeLogRecord({FIELDS_ATTRIBUTE: None}).__dict__)

_context_keys: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("pokemon_log_keys", default=None)
ContextToken = contextvars.Token[dict[str, Any] | None]


def bind_context(**keys: Any) -> ContextToken:
    """Add `keys` to every line logged from the current task (a request) until `unbind_context`."""
    return _context_keys.set({**(_context_keys.get() or {}), **keys})


def unbind_context(token: ContextToken) -> None:
    _context_keys.reset(token)


class EventFormatter(BasePowertoolsFormatter):
    """Formats one event per line; exceptions appear by type only, never as a stack trace."""

    def __init__(self, *, json_lines: bool = True, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.json_lines = json_lines
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._shown_keys: dict[str, Any] = {}
        self._last_second = -1
        self._last_ts = ""

    # Powertools' key management: appended keys appear at the top level of every line.
    def append_keys(self, **additional_keys: Any) -> None:
        self._keys.update(additional_keys)
        self._refresh_keys()

    def get_current_keys(self) -> dict[str, Any]:
        return dict(self._keys)

    def remove_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._keys.pop(key, None)
        self._refresh_keys()

    def clear_state(self) -> None:
        self._keys.clear()
        self._refresh_keys()

    def _refresh_keys(self) -> None:
        # Filtered once here rather than on every line.
        self._shown_keys = {
            key: value for key, value in self._keys.items() if value is not None and key not in _REDUNDANT_KEYS
        }

    @contextlib.contextmanager
    def append_context_keys(self, **additional_keys: Any) -> Generator[None, None, None]:
        token = _context_keys.set({**(_context_keys.get() or {}), **additional_keys})
        try:
            yield
        finally:
            _context_keys.reset(token)

    def thread_safe_append_keys(self, **additional_keys: Any) -> None:
        _context_keys.set({**(_context_keys.get() or {}), **additional_keys})

    def thread_safe_get_current_keys(self) -> dict[str, Any]:
        return dict(_context_keys.get() or {})

    def thread_safe_remove_keys(self, keys: Iterable[str]) -> None:
        current = dict(_context_keys.get() or {})
        for key in keys:
            current.pop(key, None)
        _context_keys.set(current)

    def thread_safe_clear_keys(self) -> None:
        _context_keys.set(None)

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._last_second:  # strftime is the costliest step; lines within a second share it
            self._last_ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            self._last_second = second
        return self._last_ts

    def format(self, record: logging.LogRecord) -> str:
        attributes = record.__dict__
        fields = attributes.get(FIELDS_ATTRIBUTE)
        if fields is not None and len(attributes) == _EVENT_RECORD_SIZE:
            extra = dict(fields)  # an EventLog record carries nothing else: skip the scan
        else:
            extra = {
                key: value
                for key, value in attributes.items()
                if key not in _RECORD_ATTRIBUTES and key not in _DROPPED_EXTRA and key != FIELDS_ATTRIBUTE
            }
            if isinstance(fields, dict):
                extra.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            extra["exception"] = record.exc_info[0].__name__
        return self.render(record.created, record.levelname, record.name, record.getMessage().rstrip(), extra)

    def render(self, created: float, level: str, logger_name: str, message: str, extra: dict[str, Any]) -> str:
        """One line; `format` (LogRecords) and `EventLog`'s direct path both end here, so they match."""
        ts = self._timestamp(self.clock() if self.clock is not None else created)
        keys = self._shown_keys
        context = _context_keys.get()
        if context:
            keys = {**keys, **context}
        if self.json_lines:
            entry = {"ts": ts, "level": level, "logger": logger_name, "message": message, **keys, "extra": extra}
            return compact_json(entry)
        pairs = " ".join(f"{key}={_text(value)}" for key, value in {**keys, **extra}.items())
        return f"{ts} {level:<7} {logger_name} {message}" + (f" {pairs}" if pairs else "")


def _text(value: object) -> str:
    if not isinstance(value, str):
        return compact_json(value)
    return json.dumps(value, ensure_ascii=False) if (" " in value or "=" in value or not value) else value
