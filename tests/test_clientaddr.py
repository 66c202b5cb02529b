"""The client-address rule, unit by unit: hops, ports, the walk, unparseable hops and IPv6 prefixes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clientaddr import ClientAddressResolver, forwarded_hops, parse_hop

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))
XFF = ClientAddressResolver(TRUSTED)
FORWARDED = ClientAddressResolver(TRUSTED, header="forwarded")

public_v4 = st.ip_addresses(v=4).filter(lambda a: not any(a in n for n in TRUSTED))
junk = st.text(alphabet='0123456789abcdef.:[]_ =;"', max_size=40)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("203.0.113.5", "203.0.113.5"),
        (" 203.0.113.5:1001 ", "203.0.113.5"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ('"[2001:db8::1]:443"', "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
    ],
)
def test_a_hop_is_its_address_without_port_or_quotes(text: str, address: str) -> None:
    assert str(parse_hop(text)) == address


@pytest.mark.parametrize("text", ["unknown", "_hidden", "", "[2001:db8::1", "1.2.3", "300.1.1.1:80"])
def test_unparseable_hops(text: str) -> None:
    assert parse_hop(text) is None


def test_a_forwarded_element_without_for_is_an_unknown_hop_not_none() -> None:
    # Dropped, it would shift the walk one hop left onto text the client wrote.
    assert forwarded_hops("for=1.2.3.4, proto=https;by=10.0.0.1") == ["1.2.3.4", ""]
    assert FORWARDED.resolve("10.0.0.1", "for=1.2.3.4, proto=https")[0] == "10.0.0.1"


def test_an_unparseable_hop_keys_the_request_by_the_proxy_that_wrote_it() -> None:
    assert XFF.resolve("127.0.0.1", "1.2.3.4, unknown") == ("127.0.0.1", "127.0.0.1")
    assert XFF.resolve("127.0.0.1", "1.2.3.4, unknown, 10.0.0.9") == ("10.0.0.9", "10.0.0.9")
    assert FORWARDED.resolve("127.0.0.1", "for=_hidden") == ("127.0.0.1", "127.0.0.1")


def test_the_other_header_is_never_read() -> None:
    # The resolver is handed the configured header's lines only; its split is that header's grammar.
    assert XFF.resolve("127.0.0.1", "for=5.6.7.8")[0] == "127.0.0.1"


def test_ipv6_clients_are_keyed_by_their_prefix() -> None:
    assert XFF.resolve("2001:db8:1:2::5")[1] == "2001:db8:1:2::/64"
    assert XFF.resolve("127.0.0.1", "[2001:db8:1:2:aaaa::1]:443") == ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64")
    wide = ClientAddressResolver(ipv6_prefix=48)
    assert wide.resolve("2001:db8:1:2::5") == ("2001:db8:1:2::5", "2001:db8:1::/48")
    assert ClientAddressResolver().resolve("203.0.113.5") == ("203.0.113.5", "203.0.113.5")


@given(spoofed=st.lists(junk, max_size=6), real=public_v4)
def test_whatever_a_client_writes_left_of_the_proxy_the_client_is_the_real_peer(
    spoofed: list[str], real: ipaddress.IPv4Address
) -> None:
    # The trusted proxy (127.0.0.1) appends the address it saw; the client wrote everything before it.
    header = ", ".join([*spoofed, str(real)])
    assert XFF.resolve("127.0.0.1", header) == (str(real), str(real))


@given(a=st.integers(0, 2**64 - 1), b=st.integers(0, 2**64 - 1), net=st.integers(0, 2**64 - 1))
def test_two_addresses_in_one_64_share_a_key(a: int, b: int, net: int) -> None:
    first = ipaddress.IPv6Address((net << 64) | a)
    second = ipaddress.IPv6Address((net << 64) | b)
    if first.ipv4_mapped is not None or second.ipv4_mapped is not None:
        return
    assert XFF.resolve(str(first))[1] == XFF.resolve(str(second))[1]


@given(hops=st.lists(junk, max_size=8), peer=st.sampled_from(["127.0.0.1", "10.1.1.1", "203.0.113.1"]))
def test_the_resolver_never_raises_and_keys_are_bounded(hops: list[str], peer: str) -> None:
    for resolver in (XFF, FORWARDED):
        client, key = resolver.resolve(peer, ",".join(hops))
        assert len(key) <= 100 and len(client) <= 100
