"""Structured logging through Powertools' Logger, in the product description's line format.

JSON lines look like `{"ts": "...Z", "level": "INFO", "logger": "pokemon", "message": "<event>", "extra": {...}}`;
`LOG_JSON=0` gives readable text lines instead. Lines are written by a background thread so that a
slow stdout never blocks the event loop; formatting happens in the caller.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from typing import IO, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

SERVICE = "pokemon"

# Attributes every LogRecord has; whatever else a record carries came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Keys Powertools appends by itself that would only repeat `logger` or say nothing; uvicorn's ANSI copy.
_REDUNDANT_KEYS = frozenset({"service", "sampling_rate"})
_DROPPED_EXTRA = frozenset({"color_message"})
# Event fields travel under this one record attribute, so that names LogRecord reserves ("name",
# "message", ...) can still be field names, as in the description's `{"extra": {"name": ...}}`.
FIELDS_ATTRIBUTE = "event_fields"

_context_keys: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("pokemon_log_keys", default=None)


class EventFormatter(BasePowertoolsFormatter):
    """Formats one event per line; exceptions appear by type only, never as a stack trace."""

    def __init__(self, *, json_lines: bool = True, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.json_lines = json_lines
        self.clock = clock
        self._keys: dict[str, Any] = {}
        self._last_second = -1
        self._last_ts = ""

    # Powertools' key management: appended keys appear at the top level of every line.
    def append_keys(self, **additional_keys: Any) -> None:
        self._keys.update(additional_keys)

    def get_current_keys(self) -> dict[str, Any]:
        return dict(self._keys)

    def remove_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._keys.pop(key, None)

    def clear_state(self) -> None:
        self._keys.clear()

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
        ts = self._timestamp(self.clock() if self.clock is not None else record.created)
        extra = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _RECORD_ATTRIBUTES and key not in _DROPPED_EXTRA
        }
        fields = extra.pop(FIELDS_ATTRIBUTE, None)
        if isinstance(fields, dict):
            extra.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            extra["exception"] = record.exc_info[0].__name__
        keys = {key: value for key, value in self._keys.items() if value is not None and key not in _REDUNDANT_KEYS}
        context = _context_keys.get()
        if context:
            keys.update(context)
        message = record.getMessage().rstrip()
        if self.json_lines:
            entry = {"ts": ts, "level": record.levelname, "logger": record.name, "message": message, **keys}
            entry["extra"] = extra
            return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        pairs = " ".join(f"{key}={_text(value)}" for key, value in {**keys, **extra}.items())
        return f"{ts} {record.levelname:<7} {record.name} {message}" + (f" {pairs}" if pairs else "")


def _text(value: object) -> str:
    if not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return json.dumps(value, ensure_ascii=False) if (" " in value or "=" in value or not value) else value


class BackgroundLineHandler(logging.Handler):
    """Queues formatted lines; a daemon thread writes them, so logging never waits on the stream.

    The queue is bounded: if the stream cannot keep up, lines are dropped and counted rather than
    letting memory grow or requests stall, and a `log.dropped` line says how many.
    """

    _STOP = object()

    def __init__(self, stream: IO[str] | None = None, *, background: bool = True, max_pending: int = 50_000) -> None:
        super().__init__()
        self._stream = stream or sys.stdout
        self._background = background
        self._queue: queue.Queue[object] = queue.Queue(max_pending)
        self._dropped = 0
        self._thread: threading.Thread | None = None

    def redirect(self, stream: IO[str], *, background: bool) -> None:
        self.flush()
        self._stream = stream
        self._background = background

    @property
    def dropped(self) -> int:
        return self._dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if not self._background:
            self._write([line])
            return
        if self._thread is None or not self._thread.is_alive():
            self._start_writer()
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self._dropped += 1

    def _start_writer(self) -> None:
        with self.lock or contextlib.nullcontext():
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="pokemon-log-writer", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        reported_drops = 0
        while True:
            item = self._queue.get()
            batch: list[str] = []
            stop = item is self._STOP
            if not stop:
                batch.append(str(item))
            while not stop and len(batch) < 1024:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is self._STOP:
                    stop = True
                else:
                    batch.append(str(item))
            if self._dropped != reported_drops:
                batch.append(self._dropped_line(self._dropped - reported_drops))
                reported_drops = self._dropped
            if batch:
                self._write(batch)
            for _ in range(len(batch) + (1 if stop else 0)):
                with contextlib.suppress(ValueError):
                    self._queue.task_done()
            if stop:
                return

    def _dropped_line(self, count: int) -> str:
        record = logging.makeLogRecord(
            {
                "name": SERVICE,
                "levelname": "WARNING",
                "levelno": logging.WARNING,
                "msg": "log.dropped",
                "lines": count,
            }
        )
        return self.format(record)

    def _write(self, lines: list[str]) -> None:
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not take requests down

    def flush(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join(timeout=5)
        self._thread = None
        super().close()


class EventLog:
    """Logs named events with fields: `log.info("generate.success", id=..., name=...)`.

    A thin layer over Powertools' Logger (kept as `.logger` for `inject_lambda_context`, `append_keys`, …)
    that checks the level before building anything, since the per-request events are on the hot path.
    """

    __slots__ = ("_stdlib", "logger")

    def __init__(self, powertools_logger: Logger) -> None:
        self.logger = powertools_logger
        self._stdlib = logging.getLogger(powertools_logger.service)

    def debug(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.DEBUG):
            self.logger.debug(event, stacklevel=3, extra={FIELDS_ATTRIBUTE: fields})

    def info(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.INFO):
            self.logger.info(event, stacklevel=3, extra={FIELDS_ATTRIBUTE: fields})

    def warning(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.WARNING):
            self.logger.warning(event, stacklevel=3, extra={FIELDS_ATTRIBUTE: fields})

    def error(self, event: str, /, **fields: Any) -> None:
        if self._stdlib.isEnabledFor(logging.ERROR):
            self.logger.error(event, stacklevel=3, extra={FIELDS_ATTRIBUTE: fields})


formatter = EventFormatter()
handler = BackgroundLineHandler()
logger = Logger(service=SERVICE, logger_formatter=formatter, logger_handler=handler)
log = EventLog(logger)


def configure_logging(
    *,
    level: str = "INFO",
    json_lines: bool = True,
    stream: IO[str] | None = None,
    background: bool = True,
    clock: Callable[[], float] | None = None,
) -> Logger:
    """Point the service's logger (and uvicorn's) at `stream` in the chosen format."""
    formatter.json_lines = json_lines
    formatter.clock = clock
    handler.redirect(stream or sys.stdout, background=background)
    logger.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        server_logger = logging.getLogger(name)
        server_logger.handlers = [handler]
        server_logger.propagate = False
        server_logger.setLevel(level)
    return logger


def flush_logs() -> None:
    handler.flush()
