"""uvicorn entry point: `python -m handlers.server` (HTTPS on POKEMON_HOST:POKEMON_PORT when certs exist)."""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from core.errors import ConfigError
from handlers import collector
from handlers.listen import check_listen_address

if TYPE_CHECKING:
    import uvicorn

    from core.config import Settings

# On SIGTERM the server stops accepting, lets in-flight requests finish for at most this long, then runs the
# shutdown hooks. Orchestrators wait longer than this before SIGKILL (infra/k8s/deployment.yaml).
DRAIN_SECONDS = 10


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """The cert and key when both exist and load; None when neither exists; `ConfigError` otherwise."""
    cert, key = settings.tls_cert, settings.tls_key
    if not cert.is_file() and not key.is_file():
        return None
    for variable, path in (("POKEMON_TLS_CERT", cert), ("POKEMON_TLS_KEY", key)):
        if not path.is_file():
            raise ConfigError(variable, str(path), "an existing PEM file (the cert and key go together)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError):
        raise ConfigError("POKEMON_TLS_CERT", str(cert), f"a PEM certificate matching the key in {key}") from None
    return cert, key


def build_server(settings: Settings) -> uvicorn.Server:
    # Imported when called, which `main` does with the collector paused (handlers/collector.py).
    import uvicorn

    from core.eventlog import log
    from core.metrics import PrometheusMetrics
    from handlers.api import create_app
    from handlers.header_limit import header_limited_protocol

    tls = tls_files(settings)
    app = create_app(settings, metrics=PrometheusMetrics())
    if tls is None:
        log.warning(
            "startup.tls_disabled",
            reason="no certificate files; serving plain HTTP",
            hint="python -m handlers.certs",
        )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        # Client addresses come from core.clientaddr and POKEMON_TRUSTED_PROXIES only: uvicorn would
        # otherwise believe X-Forwarded-For from 127.0.0.1 and hand a spoofer a fresh rate-limit bucket.
        proxy_headers=False,
        forwarded_allow_ips="",
        # httptools as uvicorn would pick it, with the request line and headers capped (handlers/header_limit.py).
        http=header_limited_protocol(settings.max_header_bytes),
        server_header=False,
        access_log=False,  # http.response lines replace the access log
        log_config=None,
        timeout_graceful_shutdown=DRAIN_SECONDS,
    )
    return uvicorn.Server(config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pokemon-server", description="Run the Pokémon Generator API.")
    parser.add_argument("--host", help="overrides POKEMON_HOST")
    parser.add_argument("--port", type=int, help="overrides POKEMON_PORT")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    with collector.paused():
        # Imported here rather than with the module: most of what start-up allocates comes with them, and
        # the collector pauses for all of it (handlers/collector.py).
        from core.config import load_settings
        from core.eventlog import configure_logging, flush_logs

        try:
            settings = load_settings(**overrides)
            check_listen_address(settings.host, settings.port)
            configure_logging(level=settings.log_level, json_lines=settings.log_json)
            server = build_server(settings)
        except ConfigError as exc:
            print(f"pokemon: {exc}", file=sys.stderr)
            return 2
    # uvicorn catches SIGINT/SIGTERM itself (stop accepting, drain, lifespan shutdown), then re-raises the
    # signal through the handlers it found: these make that last step a quiet exit 0 after the logs flush.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_after_shutdown)
    try:
        server.run()
    finally:
        flush_logs()
    return 0 if server.started else 1


def _exit_after_shutdown(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    raise SystemExit(main())
