"""A TCP server on loopback that accepts connections and never answers: a hung endpoint.

What a store looks like when its load balancer takes connections for a backend that stopped responding.
The accepted sockets are held open (never read, never closed) until `stop()`, so a client waits out its
read timeout; `accepted` counts them, so a test can tell whether a call went out at all.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

from tests.support.ports import LOOPBACK


class SilentServer:
    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)  # so the thread notices `stop()` promptly
        self._held: list[socket.socket] = []
        self._count_lock = threading.Lock()
        self._accepted = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._listener.getsockname()[1]}"

    @property
    def accepted(self) -> int:
        with self._count_lock:
            return self._accepted

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for connection in self._held:
            connection.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._held.append(connection)
            with self._count_lock:
                self._accepted += 1
