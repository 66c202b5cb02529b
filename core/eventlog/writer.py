"""A logging handler that never makes the caller wait on I/O: lines are written by a background thread."""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from typing import IO

from core.eventlog.formatter import SERVICE


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
