"""moto's DynamoDB as a real HTTP server process, one request at a time.

    python -m tests.support.moto_locked --port 0

prints `READY <port>` once it listens on 127.0.0.1 and exits on SIGTERM or SIGINT.

Stock `moto_server` handles requests on several threads and does not apply a conditional write atomically
(the condition is checked, then the item written, with no lock between): two concurrent writes guarded by
the same condition can both succeed, which real DynamoDB never allows. Tests of exactness under concurrency
need DynamoDB's guarantee, so this server takes one global lock around each whole request. Connections are
still accepted concurrently; only the handling is serialised.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class SerialisedApp:
    """Runs the wrapped WSGI app under one lock, the response body included."""

    def __init__(self, app: WSGIApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with self._lock:
            chunks = self._app(environ, start_response)
            try:
                # A lazily produced body would run backend code after the lock is released: produce it here.
                return list(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()


def build_server(host: str, port: int) -> BaseWSGIServer:
    app = SerialisedApp(DomainDispatcherApplication(create_backend_app))
    return make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)


def _exit(signum: int, frame: FrameType | None) -> None:
    # Raised in the main thread, which is inside serve_forever(): unwinds it, then the server socket closes.
    sys.exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)

    # werkzeug logs one line per request at INFO; thousands of them in a concurrency test say nothing.
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    server = build_server(args.host, args.port)
    try:
        print(f"READY {server.server_port}", flush=True)
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
