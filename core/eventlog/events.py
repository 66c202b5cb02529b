"""`log.info("generate.success", id=..., name=...)`: named events with fields, over Powertools' Logger."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from core.eventlog.formatter import FIELDS_ATTRIBUTE, SERVICE, EventFormatter
from core.eventlog.writer import BackgroundLineHandler

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

    __slots__ = ("_by_level", "_direct", "_formatter", "_handler", "_stdlib", "logger")

    def __init__(self, powertools_logger: Logger, formatter: EventFormatter, handler: BackgroundLineHandler) -> None:
        self.logger = powertools_logger
        self._formatter = formatter
        self._handler = handler
        self._stdlib = logging.getLogger(powertools_logger.service)
        self._direct = False
        self._by_level: dict[int, Callable[..., None]] = {
            logging.DEBUG: powertools_logger.debug,
            logging.INFO: powertools_logger.info,
            logging.WARNING: powertools_logger.warning,
            logging.ERROR: powertools_logger.error,
        }

    def refresh_route(self) -> None:
        """Re-check, after the logging set-up changed, whether lines may skip the LogRecord route."""
        stdlib, handler = self._stdlib, self._handler
        self._direct = (
            stdlib.handlers == [handler]
            and not stdlib.filters
            and not handler.filters
            and not stdlib.propagate
            and handler.formatter is self._formatter
        )

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._direct:
            self._handler.append_line(self._formatter.render(time.time(), _LEVEL_NAMES[level], SERVICE, event, fields))
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
