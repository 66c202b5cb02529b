"""The core's errors: one base, one class per way a request or a start-up can fail.

They say what went wrong in the domain's terms; `handlers/errors.py` holds the one table that turns each
into an HTTP answer (status, contract code, message, headers), so every path answers alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.redaction import mask_url_credentials

if TYPE_CHECKING:
    from core.ratelimit.bucket import RateDecision

SECRET_VARIABLES = frozenset({"POKEMON_BEARER_TOKEN", "OPENAI_API_KEY"})  # POKEMON_REDIS_URL: its password is masked


class PokemonError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(PokemonError):
    """A setting has a value the service cannot run with; the message is one line naming it.

    Not a ValueError on purpose: pydantic would swallow it into a ValidationError.
    """

    def __init__(self, variable: str, value: object, allowed: str) -> None:
        self.variable = variable
        self.value = value
        self.allowed = allowed
        secret = variable in SECRET_VARIABLES or hasattr(value, "get_secret_value")
        shown = "'***'" if secret else mask_url_credentials(repr(value))
        super().__init__(f"invalid setting {variable}={shown}: {allowed}")


class ImageFolderError(PokemonError):
    """The image folder, or an image in it, cannot serve: `reason` says which and why."""

    def __init__(self, folder: str, reason: str) -> None:
        self.folder = folder
        self.reason = reason
        super().__init__(f"{folder}: {reason}")


class InvalidRequest(PokemonError, ValueError):
    """A request parameter has a value outside what is allowed; the message says what is."""


class Unauthorized(PokemonError):
    """No bearer token (`invalid` False) or a wrong one (`invalid` True)."""

    def __init__(self, *, invalid: bool) -> None:
        self.invalid = invalid
        super().__init__("The bearer token is invalid." if invalid else "A bearer token is required.")


class RateLimited(PokemonError):
    """The client's bucket is empty; `decision` says when it refills."""

    def __init__(self, decision: RateDecision) -> None:
        self.decision = decision
        super().__init__("Too many requests; retry later.")


class NameServerError(PokemonError):
    """The name server gave no usable name; `reason` says why, for the logs and the breaker. The remote
    name pool handles it (a local name serves): it never reaches a caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GenerationFailed(PokemonError):
    """A creature could not be produced, even through the fallbacks."""


class ServiceUnavailable(PokemonError):
    """The service cannot take the request now: overloaded or still warming up."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)
