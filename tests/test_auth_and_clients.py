"""Bearer-token checks and client-address resolution behind proxies."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import SecretStr

from core.auth import AuthOutcome, BearerAuth
from core.clientaddr import ClientAddressResolver


def test_no_token_configured_lets_everyone_in() -> None:
    auth = BearerAuth(None)
    assert not auth.enabled
    assert auth.check(None) is AuthOutcome.ALLOWED


@pytest.mark.parametrize(
    ("header", "outcome"),
    [
        ("Bearer s3cret", AuthOutcome.ALLOWED),
        ("bearer s3cret", AuthOutcome.ALLOWED),
        ("  Bearer   s3cret  ", AuthOutcome.ALLOWED),
        (None, AuthOutcome.MISSING),
        ("", AuthOutcome.MISSING),
        ("Basic czNjcmV0", AuthOutcome.MISSING),
        ("Bearer", AuthOutcome.INVALID),
        ("Bearer s3cre", AuthOutcome.INVALID),
        ("Bearer s3cret2", AuthOutcome.INVALID),
        ("Bearer S3CRET", AuthOutcome.INVALID),
        ("Bearer s3cr\u00e9t", AuthOutcome.INVALID),
    ],
)
def test_bearer_checks(header: str | None, outcome: AuthOutcome) -> None:
    assert BearerAuth(SecretStr("s3cret")).check(header) is outcome


def test_the_token_is_not_in_the_repr() -> None:
    auth = BearerAuth(SecretStr("s3cret"))
    assert "s3cret" not in repr(auth)
    assert auth.enabled


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    resolver = ClientAddressResolver(TRUSTED)
    assert resolver.resolve("203.0.113.9", "1.2.3.4") == ("203.0.113.9", "203.0.113.9")
    assert ClientAddressResolver().resolve("127.0.0.1", "1.2.3.4") == ("127.0.0.1", "127.0.0.1")


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    resolver = ClientAddressResolver(TRUSTED)
    # A client can write anything on the left; the trusted proxy appended the real peer on the right.
    assert resolver.resolve("10.0.0.2", "6.6.6.6, 198.51.100.7, 10.0.0.5")[0] == "198.51.100.7"
    assert resolver.resolve("10.0.0.2", "198.51.100.7")[0] == "198.51.100.7"


def test_the_forwarded_header_is_read_only_when_it_is_the_configured_one() -> None:
    resolver = ClientAddressResolver(TRUSTED, header="forwarded")
    header = 'for=6.6.6.6, for="[2001:db8::1]:4711";proto=https, for=10.1.2.3:8080'
    assert resolver.resolve("::1", header) == ("2001:db8::1", "2001:db8::/64")
    assert resolver.resolve("10.0.0.1", "for=192.0.2.60:443;by=10.0.0.1")[0] == "192.0.2.60"
    assert resolver.header_name == b"forwarded"
    assert ClientAddressResolver(TRUSTED).header_name == b"x-forwarded-for"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    resolver = ClientAddressResolver(TRUSTED)
    assert resolver.resolve("10.0.0.2", "10.9.9.9, 10.0.0.5")[0] == "10.9.9.9"


def test_no_peer_is_unknown() -> None:
    assert ClientAddressResolver(TRUSTED).resolve(None) == ("unknown", "unknown")
