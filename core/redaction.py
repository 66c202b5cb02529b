"""Secrets kept out of what the service shows: credentials in URLs, credential-like query parameters.

Pure text functions, used where text is logged or printed: `startup.config`, configuration errors, the
`http.request` line's query, the command line's messages.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "***"

# Parameter names whose values are credentials, compared without case, `-` or `_` (`api-key`, `API_KEY`
# and `apikey` are one name): what OAuth, API gateways and signed URLs put in a query.
CREDENTIAL_PARAMETERS = frozenset(
    {
        "accesstoken",
        "token",
        "apikey",
        "key",
        "password",
        "passwd",
        "secret",
        "clientsecret",
        "auth",
        "authorization",
        "signature",
        "sig",
    }
)
# Every name above holds one of these words, and a name written with `%`, `-` or `_` may hide one: a query
# without any of them (`seed=7`, the usual one) is returned untouched after this one scan.
# Matched against the lower-cased query: twice as fast as the same pattern with (?i).
_MAY_HOLD_CREDENTIALS = re.compile(r"token|key|pass|secret|auth|sig|[%_-]")
_NAME_NOISE = str.maketrans("", "", "-_ \t")
# `scheme://user:password@host`: the userinfo ends at the last `@` before the path (a password may hold a
# raw `@`, however wrong that is).
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/?#@:\s]*)(?P<password>:[^/?#\s]*)?@(?=[^/?#@\s]*(?:[/?#\s]|$))"
)


def is_credential_parameter(name: str) -> bool:
    """Whether a query parameter's name (as sent, percent-encoded or not) names a credential."""
    return unquote_plus(name).translate(_NAME_NOISE).lower() in CREDENTIAL_PARAMETERS


def mask_query(query: str, secret: str | None = None) -> str:
    """`query` with the values of credential parameters, and of any holding `secret`, written `***`.

    Everything else stays as sent, separators and encoding included. `secret` is also looked for in each
    value decoded, so a client cannot slip the token past by percent-encoding it.
    """
    if _MAY_HOLD_CREDENTIALS.search(query.lower()) is None and (not secret or secret not in query):
        return query
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        if not equals or not value:
            continue
        if is_credential_parameter(name) or (secret and (secret in value or secret in unquote_plus(value))):
            parts[index] = f"{name}={MASK}"
    return "&".join(parts)


def mask_url_credentials(text: str) -> str:
    """`text` with the password of any `scheme://user:password@host` in it written `***`.

    The user name stays, unless it is all the userinfo there is (`https://<token>@host`, as tokens are sent).
    """
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(_masked_userinfo, text)


def _masked_userinfo(match: re.Match[str]) -> str:
    if match.group("password") is None:
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
