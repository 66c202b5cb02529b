"""A response body read with a size cap on what it decompresses to.

A name server's answer is a few hundred bytes, so a body past the cap is hostile or broken: reading it whole
would let the server decide how much memory and event-loop time the service spends. httpx's own decoders
inflate each network chunk whole (64 KiB of gzip can be 64 MiB of output), so the body is read raw and
inflated here with a bound on every step: memory stays under the cap plus one chunk, whatever the ratio.
"""

from __future__ import annotations

import zlib
from typing import Final

import httpx

from core.errors import NameServerError

# zlib's "any header" window: gzip and zlib-wrapped deflate alike.
_AUTO_HEADER_WBITS: Final = 32 + zlib.MAX_WBITS
# Only what can be inflated with a bound is asked for; a server that sends anything else is refused.
ACCEPT_ENCODING: Final = "gzip, deflate"


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """The decoded body, or `NameServerError("too_large")` as soon as it would pass `limit` bytes."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        inflate = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(_AUTO_HEADER_WBITS)
    else:
        raise NameServerError("bad_encoding")
    body = bytearray()
    async for raw in response.aiter_raw():
        if inflate is None:
            chunk = raw
        else:
            # One byte over the room left is enough to know the cap is passed; the rest is never inflated.
            try:
                chunk = inflate.decompress(raw, limit + 1 - len(body))
            except zlib.error:
                raise NameServerError("bad_encoding") from None
        if len(body) + len(chunk) > limit:
            raise NameServerError("too_large")
        body += chunk
    return bytes(body)
