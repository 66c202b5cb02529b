"""Bearer-token check (RFC 6750), in constant time."""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from pydantic import SecretStr


class AuthOutcome(Enum):
    ALLOWED = "allowed"
    MISSING = "missing"  # no credentials: the challenge carries no error code
    INVALID = "invalid"  # credentials sent but wrong: error="invalid_token"


def _digest(value: bytes) -> bytes:
    # Comparing fixed-size digests keeps the comparison's time independent of the token's length too.
    return hashlib.sha256(value).digest()


class BearerAuth:
    """Checks `Authorization: Bearer <token>` when a token is configured; lets everything through otherwise."""

    __slots__ = ("_expected",)

    def __init__(self, token: SecretStr | None) -> None:
        secret = token.get_secret_value() if token is not None else ""
        self._expected = _digest(secret.encode()) if secret else None

    def __repr__(self) -> str:
        return f"BearerAuth(enabled={self.enabled})"

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def check(self, authorization: str | None) -> AuthOutcome:
        if self._expected is None:
            return AuthOutcome.ALLOWED
        if not authorization:
            return AuthOutcome.MISSING
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return AuthOutcome.MISSING
        supplied = _digest(credentials.strip().encode("utf-8", "surrogateescape"))
        return AuthOutcome.ALLOWED if hmac.compare_digest(supplied, self._expected) else AuthOutcome.INVALID
