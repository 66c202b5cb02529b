"""Which address a request comes from, trusting proxy headers only from configured proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    """The `for=` nodes of an RFC 7239 `Forwarded` header, in order."""
    nodes: list[str] = []
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, node = pair.strip().partition("=")
            if key.strip().lower() != "for":
                continue
            node = node.strip().strip('"')
            if node.startswith("["):  # [IPv6]:port
                node = node[1 : node.find("]")] if "]" in node else node[1:]
            elif node.count(":") == 1:  # IPv4:port
                node = node.split(":", 1)[0]
            nodes.append(node)
    return nodes


class ClientAddressResolver:
    """Walks the forwarding chain from the nearest hop back, skipping trusted proxies.

    The first hop that is not a trusted proxy is the client: anything further left was written by that
    client and cannot be believed, so spoofing `X-Forwarded-For` earns nobody a fresh bucket.
    """

    def __init__(self, trusted_proxies: Sequence[IPNetwork] = ()) -> None:
        self._trusted = tuple(trusted_proxies)

    @property
    def trusts_proxies(self) -> bool:
        return bool(self._trusted)

    def _is_trusted(self, address: str) -> bool:
        parsed = _parse_address(address)
        return parsed is not None and any(parsed in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded: str | None = None, x_forwarded_for: str | None = None) -> str:
        peer = peer or "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        if forwarded:
            hops = _forwarded_for(forwarded)
        elif x_forwarded_for:
            hops = [hop.strip() for hop in x_forwarded_for.split(",")]
        else:
            return peer
        for hop in reversed(hops):
            if not hop or _parse_address(hop) is None:
                # An unparseable hop ("unknown", an obfuscated id) ends what can be verified.
                return hop[:100] or peer
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer
