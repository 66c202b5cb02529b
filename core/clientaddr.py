"""Which address a request comes from, trusting proxy headers only from configured proxies.

The rule, in full (README "Rate limiting and proxies"):

* Only the header the proxies write is read (`POKEMON_PROXY_HEADER`: `x-forwarded-for` or `forwarded`); the
  other one is client-written text behind such a proxy, so it is ignored.
* All lines of that header are one list, in order: a proxy may append its own line after the client's.
* Walking from the peer leftwards, each hop was written by the one to its right; a hop is believed only
  when its writer is a trusted proxy. The client is the rightmost hop that is not a trusted proxy (the
  leftmost one when every hop is trusted: a trusted proxy wrote it).
* An unparseable hop (`unknown`, an obfuscated `_id`, an empty one) ends the walk and the request is the
  trusted proxy's that wrote it: a client cannot name its own bucket with it, it can only share its proxy's.
* Ports are dropped (`203.0.113.5:1001`, `[2001:db8::1]:443`); IPv4-mapped IPv6 addresses are IPv4.
* The rate-limit key of an IPv6 client is its prefix (`/64` by default: one host holds a whole /64); the
  logged client stays the full address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ProxyHeader = Literal["x-forwarded-for", "forwarded"]

UNKNOWN: Final = "unknown"
MAX_HOPS: Final = 64  # a proxy chain is a handful of hops; more is a client padding the header


@lru_cache(maxsize=4096)
def parse_hop(text: str) -> IPAddress | None:
    """The address of one hop as either header writes it, without its port or quotes; None if there is none."""
    node = text.strip().strip('"').strip()
    if node.startswith("["):  # [IPv6] or [IPv6]:port
        end = node.find("]")
        if end < 0:
            return None
        node = node[1:end]
    elif node.count(":") == 1:  # IPv4:port (a bare IPv6 address has several colons)
        node = node.partition(":")[0]
    try:
        address = ipaddress.ip_address(node)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def x_forwarded_for_hops(value: str) -> list[str]:
    return value.split(",")[-MAX_HOPS:]


def forwarded_hops(value: str) -> list[str]:
    """One hop per RFC 7239 element, its `for=` node; an element without one is an unknown hop, not none."""
    hops: list[str] = []
    for element in value.split(",")[-MAX_HOPS:]:
        node = ""
        for pair in element.split(";"):
            key, _, found = pair.partition("=")
            if key.strip().lower() == "for":
                node = found
                break
        hops.append(node)
    return hops


class ClientAddressResolver:
    """Resolves a request's client (what is logged) and its rate-limit key from the peer and proxy header."""

    def __init__(
        self,
        trusted_proxies: Sequence[IPNetwork] = (),
        *,
        header: ProxyHeader = "x-forwarded-for",
        ipv6_prefix: int = 64,
    ) -> None:
        if not 0 < ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be between 1 and 128")
        self._trusted = tuple(trusted_proxies)
        self.header = header
        self.header_name = header.encode()
        self._split = forwarded_hops if header == "forwarded" else x_forwarded_for_hops
        self._ipv6_prefix = ipv6_prefix
        # Per instance: the key depends on this resolver's prefix.
        self._ipv6_key = lru_cache(maxsize=4096)(self._ipv6_key_uncached)

    @property
    def trusts_proxies(self) -> bool:
        return bool(self._trusted)

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self._trusted)

    def key_for(self, address: str) -> str:
        """The rate-limit key of a resolved client: IPv4 and unparseable text as they are, IPv6 its prefix."""
        # The check on ':' alone keeps an IPv4 peer (the common case, every request) free of any parsing.
        return self._ipv6_key(address) if ":" in address else address

    def _ipv6_key_uncached(self, address: str) -> str:
        parsed = parse_hop(address)
        if not isinstance(parsed, ipaddress.IPv6Address):
            return str(parsed) if parsed is not None else address
        return str(ipaddress.IPv6Network((parsed, self._ipv6_prefix), strict=False))

    def resolve(self, peer: str | None, header: str | None = None) -> tuple[str, str]:
        """(client, key) of a request from `peer` with `header` (all lines of the configured header, joined)."""
        if not peer:
            return UNKNOWN, UNKNOWN
        if not self._trusted:
            return peer, self.key_for(peer)
        parsed_peer = parse_hop(peer)
        if parsed_peer is None:
            return peer[:100], peer[:100]
        client = parsed_peer
        if header and self.is_trusted(parsed_peer):
            client = self._walk(parsed_peer, self._split(header))
        text = str(client)
        return text, self.key_for(text)

    def _walk(self, writer: IPAddress, hops: Sequence[str]) -> IPAddress:
        """The rightmost hop not trusted, starting with `writer` (trusted) as the writer of the last hop."""
        for hop in reversed(hops):
            address = parse_hop(hop)
            if address is None:
                return writer  # what the trusted writer could not name is its own: never the client's choice
            if not self.is_trusted(address):
                return address
            writer = address
        return writer
