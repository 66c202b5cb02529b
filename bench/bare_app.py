"""The benchmark's baseline: a bare FastAPI app that replays canned `GET /v1/generate` bodies.

It measures what FastAPI + uvicorn cost on this machine with nothing of the service in the way (no
middleware, no dependencies, no logging, no generation), so `bench_server.py` can report the real
service's throughput as a fraction of it. Started by `bench_server.py` as `python -m bench.bare_app`;
configured through the environment:

    BENCH_BODY_DIR   the exact bytes of real responses, one file each (one per image, so that the
                     baseline sends the same mix of sizes as the service); served in turn
    BENCH_HOST       the address to bind (127.0.0.1)
    BENCH_PORT       the port to bind
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response


def create_app(bodies: list[bytes]) -> FastAPI:
    app = FastAPI()
    turns = itertools.cycle(bodies)

    @app.get("/v1/generate")
    async def generate() -> Response:
        return Response(content=next(turns), media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(content=b'{"status":"ok"}', media_type="application/json")

    return app


def build_server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    # The same keyword arguments as handlers.server.build_server (without TLS), so that the two
    # servers differ only in the application; loop and http stay "auto" (uvloop/httptools) in both.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=None,
        ssl_keyfile=None,
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def main() -> int:
    bodies = [path.read_bytes() for path in sorted(Path(os.environ["BENCH_BODY_DIR"]).glob("*.json"))]
    server = build_server(create_app(bodies), os.environ.get("BENCH_HOST", "127.0.0.1"), int(os.environ["BENCH_PORT"]))
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
