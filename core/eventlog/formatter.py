"""One event, one line: the product description's JSON shape, or readable text with `LOG_JSON=0`.

JSON lines look like `{"ts": "...Z", "level": "INFO", "logger": "pokemon", "message": "<event>", "extra": {...}}`.
Keys bound to the current request (`bind_context`) appear at the top level of every line it logs.
Whatever a value holds, a line stays one line (`escape.py`), and a secret given to `mask` never shows.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

from core.eventlog.escape import escape_text, json_safe, text_value
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

# The names a JSON line gives its own fields. A bound key of the same name would take that field's place (the
# line is a dict), so such a line is encoded as a whole rather than from cached parts (`_json_line`).
_LINE_NAMES = frozenset({"ts", "level", "logger", "message", "extra"})
_MAX_CACHED_HEADS = 1024  # distinct (level, logger, message) triples kept encoded; events are far fewer

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
        # Caches, each one tuple so that a thread always reads a matching set (the writer thread formats too).
        self._last_ts: tuple[int, str] = (-1, "")
        self._keys_json: tuple[dict[str, Any] | None, dict[str, Any] | None, str | None] = (None, None, "")
        self._heads: dict[tuple[str, str, str], str] = {}
        # The forms a secret takes in each format; empty (the usual case) unless `mask` was called.
        self._masked_json: tuple[str, ...] = ()
        self._masked_text: tuple[str, ...] = ()

    def mask(self, secret: str) -> None:
        """Write `***` wherever `secret` would appear in a line, as is or as the line's format escapes it."""
        if not secret:
            return
        # In JSON only the encoded form can occur, and only inside a string: masking it keeps the line JSON.
        # Longest first: a shorter secret inside a longer one must not leave the longer one half written.
        json_forms = {*self._masked_json, json_safe(compact_json(secret)[1:-1])}
        text_forms = {*self._masked_text, secret, text_value(secret).strip('"')}
        self._masked_json = tuple(sorted(json_forms, key=len, reverse=True))
        self._masked_text = tuple(sorted(text_forms - {""}, key=len, reverse=True))

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
        last_second, text = self._last_ts
        if second != last_second:  # strftime is the costliest step; lines within a second share it
            text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            self._last_ts = (second, text)
        return text

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
        shown = self._shown_keys
        context = _context_keys.get()
        if self.json_lines:
            line = self._json_line(ts, level, logger_name, message, shown, context, extra)
            # Tested here rather than in json_safe, saving a call: isascii() reads a flag, DEL is one scan.
            if not line.isascii() or "\x7f" in line:
                line = json_safe(line)
        else:
            keys = {**shown, **context} if context else shown
            pairs = " ".join(f"{key}={_text(value)}" for key, value in {**keys, **extra}.items())
            if not message.isprintable():
                message = escape_text(message)
            line = f"{ts} {level:<7} {logger_name} {message}" + (f" {pairs}" if pairs else "")
        masked = self._masked_json if self.json_lines else self._masked_text
        if masked:  # only when a secret is configured: then one `in` per line and form
            line = _mask(line, masked)
        return line

    def _json_line(
        self,
        ts: str,
        level: str,
        logger_name: str,
        message: str,
        shown: dict[str, Any],
        context: dict[str, Any] | None,
        extra: dict[str, Any],
    ) -> str:
        """`{"ts": ts, "level": level, "logger": logger_name, "message": message, **keys, "extra": extra}` as JSON.

        Written from parts, so that a line encodes only its own fields: the level, logger and message are
        encoded once per event, and the bound keys once per request (a request binds a new dict, and its
        lines reuse the text while that dict is the one in force).
        """
        cached_shown, cached_context, keys_json = self._keys_json
        if cached_shown is not shown or cached_context is not context:
            keys = {**shown, **context} if context else shown
            keys_json = "" if not keys else ("," + compact_json(keys)[1:-1] if _LINE_NAMES.isdisjoint(keys) else None)
            self._keys_json = (shown, context, keys_json)  # holding both keeps their ids from being reused
        if keys_json is None:
            keys = {**shown, **context} if context else shown
            entry = {"ts": ts, "level": level, "logger": logger_name, "message": message, **keys, "extra": extra}
            return compact_json(entry)
        head = self._heads.get((level, logger_name, message))
        if head is None:
            level_json, logger_json, message_json = (
                compact_json(level),
                compact_json(logger_name),
                compact_json(message),
            )
            head = f',"level":{level_json},"logger":{logger_json},"message":{message_json}'
            if len(self._heads) < _MAX_CACHED_HEADS:
                self._heads[(level, logger_name, message)] = head
        # The time is digits and ASCII punctuation (strftime's format above): nothing in it to escape.
        return f'{{"ts":"{ts}"{head}{keys_json},"extra":{compact_json(extra)}}}'


def _mask(line: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in line:
            line = line.replace(secret, "***")
    return line


def _text(value: object) -> str:
    if not isinstance(value, str):
        text = compact_json(value)
        return text if text.isascii() and "\x7f" not in text else json_safe(text)
    # text_value's plain case, inlined: it is most values of most lines.
    if value.isprintable() and value and " " not in value and "=" not in value and '"' not in value:
        return value
    return text_value(value)
