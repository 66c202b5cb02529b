"""Structured logging through Powertools' Logger, in the product description's line format.

JSON lines look like `{"ts": "...Z", "level": "INFO", "logger": "pokemon", "message": "<event>", "extra": {...}}`;
`LOG_JSON=0` gives readable text lines instead. Lines are written by a background thread so that a
slow stdout never blocks the event loop; formatting happens in the caller.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from typing import IO, Any

from aws_lambda_powertools import Logger
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


class BackgroundLineHandler(logging.Handler):
    """Collects formatted lines; a daemon thread writes them in batches, so logging never waits on I/O.

    The hot path is one `deque.append` — no lock, no wake-up: the writer sleeps `flush_interval` between
    batches instead of being signalled per line, which on a busy single core costs far less than a
    queue's condition variable. The backlog is bounded: if the stream cannot keep up, lines are dropped
    and counted rather than letting memory grow, and a `log.dropped` line says how many.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        background: bool = True,
        max_pending: int = 100_000,
        flush_interval: float = 0.05,
    ) -> None:
        super().__init__()
        self._stream = stream or sys.stdout
        self._background = background
        self._max_pending = max_pending
        self._flush_interval = flush_interval
        self._pending: collections.deque[str] = collections.deque()
        self._dropped = 0
        self._reported_drops = 0
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def redirect(self, stream: IO[str], *, background: bool) -> None:
        self.flush()
        self._stream = stream
        self._background = background

    @property
    def dropped(self) -> int:
        return self._dropped

    def handle(self, record: logging.LogRecord) -> bool:
        # logging.Handler.handle takes the handler's lock around emit(); appending to a deque needs none.
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.append_line(line)

    def append_line(self, line: str) -> None:
        """Queue one already formatted line for the writer."""
        if not self._background:
            self._pending.append(line)
            self.flush()
            return
        if len(self._pending) >= self._max_pending:
            self._dropped += 1
            return
        self._pending.append(line)
        if self._thread is None:
            self._start_writer()

    def _start_writer(self) -> None:
        with self._write_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pokemon-log-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self._flush_interval)
            self.flush()

    def _dropped_line(self, count: int) -> str:
        record = logging.makeLogRecord(
            {"name": SERVICE, "levelname": "WARNING", "levelno": logging.WARNING, "msg": "log.dropped", "lines": count}
        )
        return self.format(record)

    def flush(self) -> None:
        """Write everything pending now (from any thread), in batches."""
        with self._write_lock:
            pending = self._pending
            while pending or self._dropped != self._reported_drops:
                batch = [pending.popleft() for _ in range(min(len(pending), 4096))]
                if self._dropped != self._reported_drops:
                    batch.append(self._dropped_line(self._dropped - self._reported_drops))
                    self._reported_drops = self._dropped
                try:
                    self._stream.write("\n".join(batch) + "\n")
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # a closed or broken stdout must not take requests down

    def close(self) -> None:
        self.flush()
        super().close()


_LEVEL_NAMES = {
    level: logging.getLevelName(level) for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
}


class EventLog:
    """Logs named events with fields: `log.info("generate.success", id=..., name=...)`.

    A thin layer over Powertools' Logger (kept as `.logger` for `inject_lambda_context`, `append_keys`, …).
    The per-request events are on the hot path, so when the service's logger is set up as usual — its own
    handler only, no filters, no propagation — a line is rendered by the same formatter and handed to that
    handler directly, without building a LogRecord; anything else takes the standard logging route.
    """

    __slots__ = ("_by_level", "_direct", "_stdlib", "logger")

    def __init__(self, powertools_logger: Logger) -> None:
        self.logger = powertools_logger
        self._stdlib = logging.getLogger(powertools_logger.service)
        self._direct = False
        self._by_level: dict[int, Callable[..., None]] = {
            logging.DEBUG: powertools_logger.debug,
            logging.INFO: powertools_logger.info,
            logging.WARNING: powertools_logger.warning,
            logging.ERROR: powertools_logger.error,
        }

    def refresh_route(self) -> None:
        stdlib = self._stdlib
        self._direct = (
            stdlib.handlers == [handler]
            and not stdlib.filters
            and not handler.filters
            and not stdlib.propagate
            and handler.formatter is formatter
        )

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._direct:
            handler.append_line(formatter.render(time.time(), _LEVEL_NAMES[level], SERVICE, event, fields))
        else:
            self._by_level[level](event, stacklevel=4, extra={FIELDS_ATTRIBUTE: fields})

    def debug(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.DEBUG):
            self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.INFO):
            self._emit(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.WARNING):
            self._emit(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.ERROR):
            self._emit(logging.ERROR, event, fields)


formatter = EventFormatter()
handler = BackgroundLineHandler()
logger = Logger(service=SERVICE, logger_formatter=formatter, logger_handler=handler)
log = EventLog(logger)
atexit.register(handler.flush)  # the writer is a daemon thread: what it has not written yet goes now


def configure_logging(
    *,
    level: str = "INFO",
    json_lines: bool = True,
    stream: IO[str] | None = None,
    background: bool = True,
    clock: Callable[[], float] | None = None,
) -> Logger:
    """Point the service's logger (and uvicorn's) at `stream` in the chosen format."""
    # The logging HOWTO's optimisations: events carry their own context, so skip the caller-frame walk
    # and the thread/process look-ups that every LogRecord would otherwise pay for.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter.json_lines = json_lines
    formatter.clock = clock
    handler.redirect(stream or sys.stdout, background=background)
    logger.setLevel(level)
    # Lines go to our handler only; propagating to the root logger would print them twice.
    logging.getLogger(SERVICE).propagate = False
    for name in ("uvicorn", "uvicorn.error"):
        server_logger = logging.getLogger(name)
        server_logger.handlers = [handler]
        server_logger.propagate = False
        server_logger.setLevel(level)
    log.refresh_route()
    return logger


def flush_logs() -> None:
    handler.flush()


ContextToken = contextvars.Token[dict[str, Any] | None]


def bind_context(**keys: Any) -> ContextToken:
    """Add `keys` to every line logged from the current task (a request) until `unbind_context`."""
    return _context_keys.set({**(_context_keys.get() or {}), **keys})


def unbind_context(token: ContextToken) -> None:
    _context_keys.reset(token)
