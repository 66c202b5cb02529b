"""Secrets kept out of shown text (core/redaction.py): query parameters and URL credentials."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import load_settings
from core.errors import ConfigError
from core.redaction import CREDENTIAL_PARAMETERS, is_credential_parameter, mask_query, mask_url_credentials


@pytest.mark.parametrize(
    "name",
    [
        "access_token",
        "Access-Token",
        "ACCESSTOKEN",
        "%61ccess_token",
        "api_key",
        "API-KEY",
        "apikey",
        "key",
        "Password",
        "passwd",
        "secret",
        "client_secret",
        "client-secret",
        "auth",
        "Authorization",
        "signature",
        "SIG",
        "%73ig",
    ],
)
def test_credential_names_however_written(name: str) -> None:
    assert is_credential_parameter(name)
    assert mask_query(f"seed=7&{name}=value-1&x=y") == f"seed=7&{name}=***&x=y"


@pytest.mark.parametrize("name", ["seed", "q", "monkey", "tokens", "signal", "author", "passage", "keys"])
def test_other_names_are_kept(name: str) -> None:
    assert not is_credential_parameter(name)
    assert mask_query(f"{name}=value-1") == f"{name}=value-1"


def test_the_rest_of_the_query_stays_as_sent() -> None:
    assert mask_query("seed=7") == "seed=7"
    assert mask_query("a=1&&token&token=&b=%20x&token=t;x") == "a=1&&token&token=&b=%20x&token=***"
    assert mask_query("q=SECRET-1&r=x%53ECRET-1", "SECRET-1") == "q=***&r=***"
    assert mask_query("q=" + quote("SECRET-1", safe="") + "&seed=7", "SECRET-1") == "q=***&seed=7"


@given(st.sampled_from(sorted(CREDENTIAL_PARAMETERS)), st.text(min_size=1).filter(lambda v: "&" not in v), st.text())
def test_a_credential_value_never_survives(name: str, value: str, before: str) -> None:
    masked = mask_query(f"{before.replace('&', '')}&{name}={value}")
    assert masked.endswith(f"&{name}=***")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://user:password@host/v1", "http://user:***@host/v1"),
        ("https://user:p@ss@host:8443/v1?x=@", "https://user:***@host:8443/v1?x=@"),
        ("https://tok_123@host/v1", "https://***@host/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("invalid setting X='ftp://u:pw@h': an http:// URL", "invalid setting X='ftp://u:***@h': an http:// URL"),
        ("http://host/v1?next=a@b", "http://host/v1?next=a@b"),
    ],
)
def test_url_credentials_are_masked(text: str, shown: str) -> None:
    assert mask_url_credentials(text) == shown


def test_settings_show_the_base_url_without_its_password() -> None:
    settings = load_settings(openai_base_url="http://svc:hunter2@llm:8000/v1")
    assert settings.openai_base_url == "http://svc:hunter2@llm:8000/v1"  # the client still gets it
    assert settings.public_view()["OPENAI_BASE_URL"] == "http://svc:***@llm:8000/v1"
    with pytest.raises(ConfigError) as refused:
        load_settings(openai_base_url="ftp://svc:hunter2@llm/v1")
    assert "hunter2" not in str(refused.value) and "ftp://svc:***@llm/v1" in str(refused.value)
