"""The service's event log: one process-wide `log`, configured once by the entry point.

`log` is a module-level singleton, as Powertools' own examples have it: any module may log an event at
any time, and `configure_logging` (format, level, stream) can run before or after, in any order.

- `formatter.py` the line format (JSON or text) and the per-request context keys
- `writer.py`    the handler whose background thread writes lines in batches
- `events.py`    `EventLog`, the `log.info("event", field=...)` facade over Powertools' Logger
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable
from typing import IO

from aws_lambda_powertools import Logger

from core.eventlog.events import EventLog
from core.eventlog.formatter import SERVICE, ContextToken, EventFormatter, bind_context, unbind_context
from core.eventlog.writer import BackgroundLineHandler

__all__ = [
    "SERVICE",
    "ContextToken",
    "EventLog",
    "bind_context",
    "configure_logging",
    "flush_logs",
    "formatter",
    "handler",
    "log",
    "logger",
    "unbind_context",
]

formatter = EventFormatter()
handler = BackgroundLineHandler()


def _initial_level() -> str:
    """The level to log at until `configure_logging` sets the configured one.

    Given no level, Powertools parses POWERTOOLS_LOG_LEVEL or LOG_LEVEL itself, here at import, and raises on
    a name it does not know: a traceback before `Settings` can answer with its one-line ConfigError, and a
    Lambda module that fails to load. So it always gets one: the environment's when `logging` knows the name
    (as before), INFO otherwise (and start-up then refuses the value).
    """
    text = (os.getenv("POWERTOOLS_LOG_LEVEL") or os.getenv("LOG_LEVEL") or "").strip().upper()
    return text if text in logging.getLevelNamesMapping() else "INFO"


logger = Logger(service=SERVICE, level=_initial_level(), logger_formatter=formatter, logger_handler=handler)
log = EventLog(logger, formatter, handler)
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
