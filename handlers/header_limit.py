"""The request line and headers of a request capped at POKEMON_MAX_HEADER_BYTES: past it, 431 and the end of
the connection.

uvicorn with httptools buffers a header block of any size (an 8 MB header got a 200; 64 MB grew the process
by 116 MB): its parser has no limit, and uvicorn's own limit exists only for h11. The cap lives in a subclass
of uvicorn's `HttpToolsProtocol`, given to `uvicorn.Config(http=...)` by handlers/server.py alone: on Lambda,
API Gateway caps the headers itself before the function runs. It sits beside the parser rather than at the
transport because only the parser knows where a request's headers end; bytes alone cannot tell a header
from a body.

Counting. httptools does not say where in a read the headers end, so each header block keeps two bounds:

- `_low`, bytes certainly in the block: every read that began inside it, and the read that began it when
  that read began at a message boundary. A block still open with `_low` past the cap is too large
  whatever comes next, and is refused before another read is buffered: the parser never holds more than
  the cap and a read or two (uvloop reads at most 256 KB at a time).
- `_high`, bytes possibly in it: every read that touched it. A block that completes with `_high` within the
  cap is within it — the only check a request of a few hundred bytes ever pays. Otherwise (the block
  arrived with a body, or after one, or in one large read) its size is taken from the parsed request line
  and headers, which leaves out the whitespace the parser drops (and never stores).

A body never counts: a read that begins in a body adds nothing to `_low`, and the parsed size ignores it.

Refusing. A block that completes over the cap is answered by a small ASGI app in the service's place, the
way uvicorn answers 503 past `limit_concurrency`: the 431 then goes out in order behind any pipelined
response, and its `Connection: close` makes uvicorn close after it. A block still open is answered
directly when no response is in flight; the write side is then shut and what the client still sends is
read and dropped for up to `_LINGER_S` before closing — closing with unread data would make the kernel
answer with a reset that can destroy the 431 before the client reads it. With a response in flight, a 431
would land inside it: reading stops instead, and uvicorn closes the connection after that response.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from handlers.errors import JSON_CONTENT_TYPE, ApiError

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveCallable, ASGISendCallable, Scope
    from uvicorn.config import Config
    from uvicorn.server import ServerState

# Where the parser stands on the connection: before a request, inside its header block, past it.
_BETWEEN: Final = 0
_HEADERS: Final = 1
_BODY: Final = 2

_STATUS_LINE: Final = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
_LINGER_S: Final = 2.0
# "HTTP/1.1", the two spaces and the CRLF of the request line, and the blank line that ends the block.
_REQUEST_LINE_FRAMING: Final = 8 + 2 + 2 + 2
_HEADER_FRAMING: Final = 4  # ": " and CRLF


def _refusal(max_header_bytes: int) -> ApiError:
    return ApiError(
        431, "HEADERS_TOO_LARGE", f"The request line and headers exceed the limit of {max_header_bytes} bytes."
    )


def header_limited_protocol(max_header_bytes: int) -> type[HeaderLimitedProtocol]:
    """uvicorn's httptools protocol with the header block of every request capped at `max_header_bytes`."""
    body = _refusal(max_header_bytes).body()

    class Limited(HeaderLimitedProtocol):
        limit = max_header_bytes
        refusal_body = body

    return Limited


class HeaderLimitedProtocol(HttpToolsProtocol):
    """Build it with `header_limited_protocol`, which sets the class attributes below."""

    limit: ClassVar[int]
    refusal_body: ClassVar[bytes]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._state = _BETWEEN
        self._low = 0
        self._high = 0
        self._read = 0  # the size of the read being parsed
        self._fresh = False  # the read being parsed began at a message boundary, and no message began in it yet
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the answer is out or on its way; what follows is dropped unparsed
        size = self._read = len(data)
        state = self._state
        self._fresh = state == _BETWEEN
        if state == _HEADERS:
            self._low += size
            self._high += size
        super().data_received(data)
        if self._state == _HEADERS and self._low > self.limit and not self._refused:
            self._refuse_open_block()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._high = self._read
        self._low = self._read if self._fresh else 0
        self._fresh = False
        self._state = _HEADERS

    def on_headers_complete(self) -> None:
        self._state = _BODY
        if self._high > self.limit and self._parsed_size() > self.limit:
            # Set first: uvicorn must not hand this request over to a WebSocket protocol either.
            self._refused = True
            service, self.app = self.app, self._refuse
            try:
                super().on_headers_complete()
            finally:
                self.app = service
        else:
            super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._state = _BETWEEN
        super().on_message_complete()

    def _should_upgrade(self) -> bool:
        return not self._refused and super()._should_upgrade()

    def _parsed_size(self) -> int:
        size = len(self.parser.get_method()) + len(self.url) + _REQUEST_LINE_FRAMING
        for name, value in self.headers:
            size += len(name) + len(value) + _HEADER_FRAMING
        return size

    async def _refuse(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """The ASGI app that answers a request whose header block completed over the limit."""
        body = self.refusal_body
        headers = [JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body)), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 431, "headers": headers, "trailers": False})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _refuse_open_block(self) -> None:
        self._refused = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
            self.flow.pause_reading()
            return
        transport = self.transport
        transport.write(self._raw_refusal())
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(_LINGER_S, transport.close)
        else:
            transport.close()  # TLS cannot shut one side

    def _raw_refusal(self) -> bytes:
        body = self.refusal_body
        parts = [_STATUS_LINE]
        parts += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        parts += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        return b"".join(parts)
