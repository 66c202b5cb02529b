"""Settings: the description's names and defaults, and one clear line for every bad value."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import DEFAULT_RARITY_WEIGHTS, Settings, get_settings, load_settings, parse_rarity_weights
from core.creature import Rarity
from core.errors import ConfigError
from tests.support.environment import clean_environment
from tests.support.paths import REPO


def test_defaults_follow_the_description() -> None:
    settings = Settings()
    assert settings.images_dir == Path(REPO / "pokemon")  # set by the autouse fixture
    assert settings.image_pattern == "image_{:02d}.png"
    assert (settings.min_index, settings.max_index) == (0, 5)
    assert settings.generation_backend == "files"
    assert settings.bearer_token is None
    assert settings.rate_limit_per_min == 60
    assert settings.sdxl_model == "stabilityai/sdxl-turbo"
    assert (settings.sdxl_width, settings.sdxl_height, settings.sdxl_steps) == (512, 512, 1)
    assert settings.name_backend == "local"
    assert settings.openai_base_url == "http://localhost:11434/v1"
    assert settings.openai_model == "llama3.2:1b"
    assert settings.openai_api_key.get_secret_value() == "dummy"
    assert settings.openai_timeout == 5.0
    assert (settings.openai_max_tokens, settings.openai_temperature, settings.name_language) == (30, 0.9, "en")
    assert (settings.name_pool_size, settings.name_concurrency, settings.name_wait_ms) == (32, 2, 50)
    assert (settings.name_breaker_failures, settings.name_breaker_cooldown) == (5, 30.0)
    assert settings.log_level == "INFO"
    assert settings.log_json is True
    assert (settings.log_request_body, settings.log_remote_content, settings.log_image_b64) == (False, False, False)
    assert (settings.host, settings.port) == ("0.0.0.0", 22222)
    assert (settings.tls_cert, settings.tls_key) == (Path("certs/cert.pem"), Path("certs/key.pem"))
    assert settings.trusted_proxies == ()
    assert settings.rarity_weights == DEFAULT_RARITY_WEIGHTS


def test_default_weights_make_f_most_common_and_s_plus_rarest() -> None:
    weights = [DEFAULT_RARITY_WEIGHTS[tier] for tier in Rarity]
    assert weights == sorted(weights, reverse=True)
    assert len(set(weights)) == len(weights)


def test_environment_is_read_by_the_description_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_RATE_LIMIT_PER_MIN", "0")
    monkeypatch.setenv("POKEMON_BEARER_TOKEN", "s3cret")
    monkeypatch.setenv("LOG_LEVEL", "warn")
    monkeypatch.setenv("LOG_JSON", "0")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("POKEMON_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    monkeypatch.setenv("POKEMON_RARITY_WEIGHTS", "F=1,E=1,D=1,C=1,B=1,A=1,S=1,S+=1")
    settings = get_settings()
    assert settings.rate_limit_per_min == 0 and not settings.rate_limit_enabled
    assert settings.bearer_token is not None and settings.bearer_token.get_secret_value() == "s3cret"
    assert settings.log_level == "WARNING"
    assert settings.log_json is False
    assert settings.openai_base_url == "http://127.0.0.1:9/v1"
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))
    assert set(settings.rarity_weights.values()) == {1.0}
    assert get_settings() is settings  # read once


def test_empty_token_means_auth_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_BEARER_TOKEN", "")
    assert get_settings().bearer_token is None


def test_a_whitespace_only_token_is_refused_not_read_as_auth_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_BEARER_TOKEN", " \t ")
    with pytest.raises(ConfigError) as raised:
        get_settings()
    assert raised.value.variable == "POKEMON_BEARER_TOKEN"
    assert "\t" not in str(raised.value)  # masked like any token


def test_whitespace_around_the_token_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_BEARER_TOKEN", " tok\n")
    token = get_settings().bearer_token
    assert token is not None and token.get_secret_value() == "tok"


def test_weights_whose_sum_overflows_are_refused() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(POKEMON_RARITY_WEIGHTS="F=1e308,E=1e308,D=0,C=0,B=0,A=0,S=0,S+=1")
    assert raised.value.variable == "POKEMON_RARITY_WEIGHTS"
    assert "finite" in str(raised.value)


def test_secrets_are_masked_in_the_public_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_BEARER_TOKEN", "tok-abc-123")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-live-xyz")
    view = get_settings().public_view()
    assert view["POKEMON_BEARER_TOKEN"] == "***"
    assert view["OPENAI_API_KEY"] == "***"
    assert "tok-abc-123" not in repr(view) and "sk-live-xyz" not in repr(view)
    assert "tok-abc-123" not in repr(get_settings())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("POKEMON_MAX_INDEX", "-1", "greater than or equal to 0"),
        ("POKEMON_MIN_INDEX", "x", "valid integer"),
        ("POKEMON_GENERATION_BACKEND", "gpu", "'files' or 'sdxl'"),
        ("POKEMON_NAME_BACKEND", "cloud", "'local' or 'remote'"),
        ("POKEMON_RATE_LIMIT_PER_MIN", "-5", "greater than or equal to 0"),
        ("POKEMON_RATE_LIMIT_BREAKER_FAILURES", "0", "greater than or equal to 1"),
        ("POKEMON_RATE_LIMIT_BREAKER_COOLDOWN", "0", "greater than 0"),
        ("POKEMON_PORT", "70000", "less than or equal to 65535"),
        ("SDXL_WIDTH", "500", "multiple of 8"),
        ("SDXL_HEIGHT", "1001", "multiple of 8"),
        ("SDXL_STEPS", "0", "greater than or equal to 1"),
        ("OPENAI_TIMEOUT", "0", "greater than 0"),
        ("OPENAI_BASE_URL", "ftp://x", "http:// or https://"),
        ("OPENAI_MAX_TOKENS", "2", "greater than or equal to 8"),
        ("OPENAI_TEMPERATURE", "3", "less than or equal to 2"),
        ("OPENAI_MAX_RESPONSE_BYTES", "100", "greater than or equal to 1024"),
        ("POKEMON_NAME_LANGUAGE", "klingon", "'en', 'fr', 'es' or 'de'"),
        ("POKEMON_NAME_POOL_SIZE", "0", "greater than or equal to 1"),
        ("POKEMON_NAME_CONCURRENCY", "0", "greater than or equal to 1"),
        ("POKEMON_NAME_BREAKER_COOLDOWN", "0", "greater than 0"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO, WARN"),
        ("LOG_JSON", "maybe", "valid boolean"),
        ("POKEMON_IMAGE_PATTERN", "image.png", "field for the index"),
        ("POKEMON_IMAGE_PATTERN", "image_{name}.png", "one positional field"),
        ("POKEMON_TRUSTED_PROXIES", "10.0.0.300", "does not appear to be"),
        ("POKEMON_RARITY_WEIGHTS", "F=1", "missing E,D,C,B,A,S,S+"),
        ("POKEMON_RARITY_WEIGHTS", "F=1,E=1,D=1,C=1,B=1,A=1,S=1,S+=-1", "≥ 0"),
        ("POKEMON_RARITY_WEIGHTS", "F=0,E=0,D=0,C=0,B=0,A=0,S=0,S+=0", "above 0"),
        ("POKEMON_RARITY_WEIGHTS", "F=1,Z=2", "tiers among"),
        ("POKEMON_RARITY_WEIGHTS", "F=1,F=2", "each tier once"),
        ("POKEMON_RARITY_WEIGHTS", "F=one", "a number for F"),
        ("POKEMON_RARITY_WEIGHTS", "F=nan,E=1,D=1,C=1,B=1,A=1,S=1,S+=1", "finite"),
    ],
)
def test_bad_values_name_the_variable_the_value_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert caught.value.variable == variable
    assert message.startswith(f"invalid setting {variable}=")
    assert value in message
    assert expected in message
    assert "\n" not in message


def test_max_index_below_min_index(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_MIN_INDEX", "4")
    monkeypatch.setenv("POKEMON_MAX_INDEX", "2")
    with pytest.raises(ConfigError, match=r"POKEMON_MAX_INDEX=2: must be ≥ POKEMON_MIN_INDEX \(4\)"):
        load_settings()


def test_a_bad_token_value_is_never_echoed() -> None:
    error = ConfigError("POKEMON_BEARER_TOKEN", "hunter2", "something")
    assert "hunter2" not in str(error)


def test_weights_parse_in_any_order_and_case() -> None:
    weights = parse_rarity_weights(" s+=0.5, f=10,E=9,D=8,C=7,B=6,A=5,S=1 ")
    assert weights[Rarity.S_PLUS] == 0.5 and weights[Rarity.F] == 10


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("POKEMON_MAX_INDEX", "-1", "invalid setting POKEMON_MAX_INDEX='-1'"),
        ("POKEMON_IMAGES_DIR", "/nonexistent/images", "invalid setting POKEMON_IMAGES_DIR='/nonexistent/images'"),
        ("POKEMON_GENERATION_BACKEND", "gpu", "invalid setting POKEMON_GENERATION_BACKEND='gpu'"),
        ("POKEMON_MAX_INDEX", "9", "image file image_06.png does not exist"),
        ("SDXL_WIDTH", "513", "invalid setting SDXL_WIDTH='513'"),
    ],
)
def test_start_up_stops_with_one_line_and_a_non_zero_exit(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    env = clean_environment(**{"POKEMON_PORT": "1", "POKEMON_IMAGES_DIR": str(REPO / "pokemon"), variable: value})
    result = subprocess.run(
        [sys.executable, "-m", "handlers.server"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
