"""Whether the server can listen on POKEMON_HOST:POKEMON_PORT, asked before uvicorn is.

uvicorn meets a name that does not resolve, or a port already taken, with an error line in its own log and
`sys.exit(1)` from inside its event loop. Asking first turns both into the one-line `ConfigError` every
other bad setting gives. The trial binds the way asyncio's `create_server` will (every address the host
resolves to, SO_REUSEADDR on), so the two agree; uvicorn still binds for real, and a port taken in between
still ends in its own error.
"""

from __future__ import annotations

import errno
import socket

from core.errors import ConfigError

_PORT_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES})


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_listen_address(host: str, port: int) -> None:
    """Raise `ConfigError` naming the address when `host` does not resolve or `port` cannot be bound there."""
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise ConfigError("POKEMON_HOST", host, f"an address or a name this machine resolves ({reason})") from None
    for family, kind, protocol, _, sockaddr in candidates:
        try:
            with socket.socket(family, kind, protocol) as trial:
                trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    trial.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio binds it
                trial.bind(sockaddr)
        except OSError as exc:
            # A port taken or reserved is the port's fault; an address this machine does not have, the host's.
            variable, value = ("POKEMON_PORT", port) if exc.errno in _PORT_ERRORS else ("POKEMON_HOST", host)
            where = _address(host, port)
            raise ConfigError(variable, value, f"an address to listen on ({where}: {exc.strerror or exc})") from None
