"""Every setting of the service, typed and validated once at start-up.

Names and defaults follow the product description (`POKEMON_*`, `OPENAI_*`, `LOG_*`; the description's `SDXL_*`
names still work, see `LEGACY_NAMES`). Only the
composition root (`core/wiring.py`) and the entry points read `Settings`; everything they build takes plain
arguments.
A bad value raises `ConfigError`, whose one-line message names the variable, the value and what is
allowed; the entry points print that line and exit non-zero instead of showing a traceback.
"""

# No `from __future__ import annotations` here: pydantic would then compile every field's annotation from
# its text when the class is built, a few milliseconds of every start-up (a Lambda cold start included).

import ipaddress
import math
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.creature import Rarity
from core.errors import ConfigError
from core.redaction import mask_url_credentials

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_RARITY_WEIGHTS: dict[Rarity, float] = {
    Rarity.F: 35.0,
    Rarity.E: 25.0,
    Rarity.D: 16.0,
    Rarity.C: 11.0,
    Rarity.B: 7.0,
    Rarity.A: 4.0,
    Rarity.S: 1.5,
    Rarity.S_PLUS: 0.5,
}

DEFAULT_PROMPT_TEMPLATE = (
    "an original cute fantasy creature named {name}, {rarity_look}, monster-collecting game art, full body, "
    "centered, big expressive eyes, soft cel shading, clean outlines, simple pastel background, high quality"
)
PROMPT_FIELDS = frozenset({"name", "rarity", "rarity_look"})

_LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING", "ERROR": "ERROR"}


class Settings(BaseModel):
    """The service's configuration; build it with `get_settings()` or `load_settings()`.

    Each field reads the environment variable its `validation_alias` names (case-insensitively); values
    passed to the constructor, by field or variable name, win over the environment.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, validate_default=True)

    # Each field's variable as the user spelt it, where that was an old name (see `variable_for`).
    _legacy_used: dict[str, str] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        merged, legacy_used = _with_environment(values)
        super().__init__(**merged)
        self._legacy_used = legacy_used

    def variable_for(self, field: str) -> str:
        """The variable that set `field`: its old name when the user set that, so a refusal names what they wrote."""
        alias = type(self).model_fields[field].validation_alias
        assert isinstance(alias, str)
        return self._legacy_used.get(alias, alias)

    # General
    images_dir: Path = Field(Path("./pokemon"), validation_alias="POKEMON_IMAGES_DIR")
    image_pattern: str = Field("image_{:02d}.png", validation_alias="POKEMON_IMAGE_PATTERN")
    min_index: int = Field(0, ge=0, validation_alias="POKEMON_MIN_INDEX")
    max_index: int = Field(5, ge=0, validation_alias="POKEMON_MAX_INDEX")
    # "diffusion" is the family-neutral name of the "sdxl" backend (any diffusers pipeline); both mean the same.
    generation_backend: Literal["files", "sdxl"] = Field("files", validation_alias="POKEMON_GENERATION_BACKEND")
    bearer_token: SecretStr | None = Field(None, validation_alias="POKEMON_BEARER_TOKEN")
    rate_limit_per_min: int = Field(60, ge=0, validation_alias="POKEMON_RATE_LIMIT_PER_MIN")
    rate_limit_max_clients: int = Field(100_000, ge=1, validation_alias="POKEMON_RATE_LIMIT_MAX_CLIENTS")
    rate_limit_table: str | None = Field(None, validation_alias="POKEMON_RATE_LIMIT_TABLE")
    rate_limit_fail_open: bool = Field(True, validation_alias="POKEMON_RATE_LIMIT_FAIL_OPEN")
    rate_limit_breaker_failures: int = Field(3, ge=1, le=1000, validation_alias="POKEMON_RATE_LIMIT_BREAKER_FAILURES")
    rate_limit_breaker_cooldown: float = Field(
        5.0, gt=0, le=3600, validation_alias="POKEMON_RATE_LIMIT_BREAKER_COOLDOWN"
    )
    trusted_proxies: tuple[IPNetwork, ...] = Field((), validation_alias="POKEMON_TRUSTED_PROXIES")
    proxy_header: Literal["x-forwarded-for", "forwarded"] = Field(
        "x-forwarded-for", validation_alias="POKEMON_PROXY_HEADER"
    )
    rate_limit_ipv6_prefix: int = Field(64, ge=32, le=128, validation_alias="POKEMON_RATE_LIMIT_IPV6_PREFIX")
    auth_failures_per_min: int = Field(30, ge=0, le=100_000, validation_alias="POKEMON_AUTH_FAILURES_PER_MIN")
    # Shared state for a fleet (core/sharedstore.py): the name pool and, without a table, the rate limit.
    redis_url: SecretStr | None = Field(None, validation_alias="POKEMON_REDIS_URL")
    redis_prefix: str = Field("pokemon:", max_length=64, validation_alias="POKEMON_REDIS_PREFIX")
    redis_timeout_ms: int = Field(250, ge=10, le=10_000, validation_alias="POKEMON_REDIS_TIMEOUT_MS")
    redis_max_connections: int = Field(64, ge=1, le=10_000, validation_alias="POKEMON_REDIS_MAX_CONNECTIONS")
    redis_breaker_failures: int = Field(3, ge=1, le=1000, validation_alias="POKEMON_REDIS_BREAKER_FAILURES")
    redis_breaker_cooldown: float = Field(5.0, gt=0, le=3600, validation_alias="POKEMON_REDIS_BREAKER_COOLDOWN")
    rarity_weights: dict[Rarity, float] = Field(
        default_factory=lambda: dict(DEFAULT_RARITY_WEIGHTS), validation_alias="POKEMON_RARITY_WEIGHTS"
    )

    # Server
    host: str = Field("0.0.0.0", validation_alias="POKEMON_HOST")  # noqa: S104 - the description serves on all interfaces
    port: int = Field(22222, ge=0, le=65535, validation_alias="POKEMON_PORT")
    tls_cert: Path = Field(Path("certs/cert.pem"), validation_alias="POKEMON_TLS_CERT")
    tls_key: Path = Field(Path("certs/key.pem"), validation_alias="POKEMON_TLS_KEY")
    max_header_bytes: int = Field(16384, ge=1024, le=1_048_576, validation_alias="POKEMON_MAX_HEADER_BYTES")

    # The diffusion backend (any diffusers text-to-image pipeline: SDXL, SD, SD3, Flux, ...). The fields keep
    # the `sdxl_` prefix of the backend's internal name; the variables are family-neutral (old names: LEGACY_NAMES).
    # Width and height: any multiple of 8 here; the model's own rule (16 for SD3 and Flux) is checked at build.
    sdxl_model: str = Field("stabilityai/sdxl-turbo", min_length=1, validation_alias="POKEMON_DIFFUSION_MODEL")
    sdxl_width: int = Field(512, ge=64, le=4096, validation_alias="POKEMON_IMAGE_WIDTH")
    sdxl_height: int = Field(512, ge=64, le=4096, validation_alias="POKEMON_IMAGE_HEIGHT")
    sdxl_steps: int = Field(1, ge=1, le=200, validation_alias="POKEMON_DIFFUSION_STEPS")
    sdxl_guidance_scale: float = Field(0.0, ge=0, le=30, validation_alias="POKEMON_DIFFUSION_GUIDANCE_SCALE")
    sdxl_device: Literal["auto", "cuda", "cpu"] = Field("auto", validation_alias="POKEMON_DIFFUSION_DEVICE")
    sdxl_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", validation_alias="POKEMON_DIFFUSION_DTYPE"
    )
    sdxl_attention_slicing: Literal["auto", "1", "0"] = Field(
        "auto", validation_alias="POKEMON_DIFFUSION_ATTENTION_SLICING"
    )
    sdxl_vae: str | None = Field(None, validation_alias="POKEMON_DIFFUSION_VAE")
    sdxl_vae_upcast: bool = Field(False, validation_alias="POKEMON_DIFFUSION_VAE_UPCAST")
    sdxl_compile: bool = Field(False, validation_alias="POKEMON_DIFFUSION_COMPILE")
    prompt_template: str = Field(DEFAULT_PROMPT_TEMPLATE, min_length=1, validation_alias="POKEMON_PROMPT_TEMPLATE")
    max_batch: int = Field(8, ge=1, le=256, validation_alias="POKEMON_MAX_BATCH")
    batch_wait_ms: int = Field(10, ge=0, le=10_000, validation_alias="POKEMON_BATCH_WAIT_MS")
    queue_size: int = Field(64, ge=1, le=100_000, validation_alias="POKEMON_QUEUE_SIZE")

    # Names
    name_backend: Literal["local", "remote"] = Field("local", validation_alias="POKEMON_NAME_BACKEND")
    openai_base_url: str = Field("http://localhost:11434/v1", validation_alias="OPENAI_BASE_URL")
    openai_model: str = Field("llama3.2:1b", min_length=1, validation_alias="OPENAI_MODEL")
    openai_api_key: SecretStr = Field(SecretStr("dummy"), validation_alias="OPENAI_API_KEY")
    openai_timeout: float = Field(5.0, gt=0, le=600, validation_alias="OPENAI_TIMEOUT")
    openai_max_tokens: int = Field(30, ge=8, le=4096, validation_alias="OPENAI_MAX_TOKENS")
    openai_temperature: float = Field(0.9, ge=0, le=2, validation_alias="OPENAI_TEMPERATURE")
    openai_max_response_bytes: int = Field(
        64 * 1024, ge=1024, le=16 * 1024 * 1024, validation_alias="OPENAI_MAX_RESPONSE_BYTES"
    )
    name_language: Literal["en", "fr", "es", "de"] = Field("en", validation_alias="POKEMON_NAME_LANGUAGE")
    name_pool_size: int = Field(32, ge=1, le=10_000, validation_alias="POKEMON_NAME_POOL_SIZE")
    name_concurrency: int = Field(2, ge=1, le=64, validation_alias="POKEMON_NAME_CONCURRENCY")
    name_wait_ms: int = Field(50, ge=0, le=60_000, validation_alias="POKEMON_NAME_WAIT_MS")
    name_breaker_failures: int = Field(5, ge=1, le=1000, validation_alias="POKEMON_NAME_BREAKER_FAILURES")
    name_breaker_cooldown: float = Field(30.0, gt=0, le=3600, validation_alias="POKEMON_NAME_BREAKER_COOLDOWN")
    name_cache_ttl: int = Field(3600, ge=10, le=30 * 86_400, validation_alias="POKEMON_NAME_CACHE_TTL")

    # Logging
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(True, validation_alias="LOG_JSON")
    log_request_body: bool = Field(False, validation_alias="LOG_REQUEST_BODY")
    log_remote_content: bool = Field(False, validation_alias="LOG_REMOTE_CONTENT")
    log_image_b64: bool = Field(False, validation_alias="LOG_IMAGE_B64")

    @field_validator("bearer_token", mode="before")
    @classmethod
    def _token_text(cls, value: object) -> object:
        # Empty means auth off (the description's default). Whitespace around a token is stripped, as the
        # client's token is (core/auth.py): kept, no client could ever match it. Whitespace alone is refused
        # rather than read as "off", so a mangled secret never turns authentication off unnoticed.
        if not isinstance(value, str):
            return value
        if not value:
            return None
        if not value.strip():
            raise ValueError("a token, or empty to turn authentication off (whitespace alone is not a token)")
        return value.strip()

    @field_validator("image_pattern")
    @classmethod
    def _pattern_formats_an_index(cls, value: str) -> str:
        try:
            first, second = value.format(0), value.format(1)
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError("a Python format string with one positional field, e.g. image_{:02d}.png") from exc
        if first == second:
            raise ValueError("the pattern must contain a field for the index, e.g. image_{:02d}.png")
        if "/" in first or "\\" in first:
            raise ValueError("a file name inside POKEMON_IMAGES_DIR, without a folder")
        return value

    @field_validator("rate_limit_table", mode="before")
    @classmethod
    def _empty_table_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None  # empty: no shared state, as without the variable
        value = value.strip()
        if not value.startswith(("redis://", "rediss://")):
            raise ValueError("a redis:// or rediss:// URL (redis://[:password@]host:port/db), or empty for none")
        if any(character.isspace() or not character.isprintable() for character in value):
            # Not a URL; and a password holding them could not be masked in the logs.
            raise ValueError("a URL without spaces or control characters (percent-encode them in the password)")
        return value

    @field_validator("generation_backend", mode="before")
    @classmethod
    def _diffusion_is_sdxl(cls, value: object) -> object:
        return "sdxl" if isinstance(value, str) and value.strip().lower() == "diffusion" else value

    @field_validator("sdxl_dtype", mode="before")
    @classmethod
    def _dtype_words(cls, value: object) -> object:
        words = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32"}
        text = str(value).strip().lower()
        return words.get(text, text)

    @field_validator("sdxl_attention_slicing", mode="before")
    @classmethod
    def _slicing_words(cls, value: object) -> object:
        words = {"true": "1", "on": "1", "yes": "1", "false": "0", "off": "0", "no": "0"}
        if isinstance(value, bool):
            return "1" if value else "0"
        return words.get(str(value).strip().lower(), str(value).strip().lower())

    @field_validator("sdxl_vae", mode="before")
    @classmethod
    def _empty_vae_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("prompt_template")
    @classmethod
    def _known_prompt_fields(cls, value: str) -> str:
        try:
            value.format(name="X", rarity="S+", rarity_look="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"a template using only {{name}}, {{rarity}} and {{rarity_look}} ({exc})") from None
        return value

    @field_validator("sdxl_width", "sdxl_height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError("a multiple of 8 between 64 and 4096")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: object) -> str:
        level = _LOG_LEVELS.get(str(value).strip().upper())
        if level is None:
            raise ValueError("one of DEBUG, INFO, WARN, WARNING, ERROR")
        return level

    @field_validator("openai_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
        return value

    @field_validator("proxy_header", mode="before")
    @classmethod
    def _header_name(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("rarity_weights", mode="before")
    @classmethod
    def _parse_weights(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_rarity_weights(value)
        return value

    @field_validator("rarity_weights")
    @classmethod
    def _complete_weights(cls, value: dict[Rarity, float]) -> dict[Rarity, float]:
        missing = [tier.value for tier in Rarity if tier not in value]
        if missing:
            raise ValueError(f"a weight for every tier F,E,D,C,B,A,S,S+ (missing {','.join(missing)})")
        if any(not math.isfinite(weight) or weight < 0 for weight in value.values()):
            raise ValueError("finite weights ≥ 0")
        total = sum(value.values())
        if not math.isfinite(total):
            # Each weight finite is not enough: 1e308 twice sums to inf, and every draw would land on S+.
            raise ValueError("weights whose sum is finite")
        if total <= 0:
            raise ValueError("at least one weight above 0")
        return value

    @model_validator(mode="after")
    def _index_range(self) -> "Settings":
        if self.max_index < self.min_index:
            raise ConfigError("POKEMON_MAX_INDEX", self.max_index, f"must be ≥ POKEMON_MIN_INDEX ({self.min_index})")
        return self

    @property
    def rate_limit_enabled(self) -> bool:
        return self.rate_limit_per_min > 0

    def public_view(self) -> dict[str, object]:
        """The settings as logged at start-up: secrets masked, paths as text."""
        view: dict[str, object] = {}
        for name, field in type(self).model_fields.items():
            alias = field.validation_alias
            key = alias if isinstance(alias, str) else name
            value = getattr(self, name)
            if name == "redis_url":
                # The address is worth logging, the password in it is not.
                value = None if value is None else mask_url_credentials(value.get_secret_value())
            elif isinstance(value, SecretStr):
                value = "***"
            elif name == "bearer_token":
                value = None
            elif isinstance(value, Path):
                value = str(value)
            elif name == "trusted_proxies":
                value = [str(network) for network in value]
            elif name == "rarity_weights":
                value = format_rarity_weights(value)
            elif name == "openai_base_url":
                value = mask_url_credentials(value)  # `http://user:password@host/v1` is a valid setting
            view[str(key)] = value
        return view


# Variables renamed when the diffusion backend stopped being SDXL-only: new name -> the description's old one.
# The old name is read when the new one is absent; both set to different values is refused.
LEGACY_NAMES: dict[str, str] = {
    "POKEMON_DIFFUSION_MODEL": "SDXL_TURBO_MODEL",
    "POKEMON_IMAGE_WIDTH": "SDXL_WIDTH",
    "POKEMON_IMAGE_HEIGHT": "SDXL_HEIGHT",
    "POKEMON_DIFFUSION_STEPS": "SDXL_STEPS",
    "POKEMON_DIFFUSION_GUIDANCE_SCALE": "SDXL_GUIDANCE_SCALE",
    "POKEMON_DIFFUSION_DEVICE": "SDXL_DEVICE",
    "POKEMON_DIFFUSION_ATTENTION_SLICING": "SDXL_ATTENTION_SLICING",
    "POKEMON_DIFFUSION_VAE": "SDXL_VAE",
    "POKEMON_DIFFUSION_VAE_UPCAST": "SDXL_VAE_UPCAST",
    "POKEMON_DIFFUSION_COMPILE": "SDXL_COMPILE",
}


def _with_environment(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Every field's value by its variable name: from `values` (by field or variable name), else the environment;
    and, for each variable taken from its old name (`LEGACY_NAMES`), that name.

    A plain model reading the environment itself rather than pydantic-settings' `BaseSettings`: that library
    costs every start-up (a Lambda cold start above all) some 20 ms of imports for what these few lines do.
    Every value from the environment is the variable's text, validated by the field's own rules (the list
    and mapping fields parse their own text format).
    """
    environment = {key.upper(): value for key, value in os.environ.items()}
    merged: dict[str, Any] = {}
    legacy_used: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        variable = info.validation_alias
        assert isinstance(variable, str)  # every field names its variable
        old = LEGACY_NAMES.get(variable)
        if name in values:
            merged[variable] = values[name]
        elif variable in values:
            merged[variable] = values[variable]
        elif old is not None and old in values:
            merged[variable] = values[old]
            legacy_used[variable] = old
        elif variable.upper() in environment:
            merged[variable] = environment[variable.upper()]
            if old is not None and old in environment and environment[old] != merged[variable]:
                raise ConfigError(
                    variable,
                    merged[variable],
                    f"{old}, its old name, is set too, to {environment[old]!r}: set only {variable}",
                )
        elif old is not None and old in environment:
            merged[variable] = environment[old]
            legacy_used[variable] = old
    return merged, legacy_used


def parse_rarity_weights(text: str) -> dict[Rarity, float]:
    """Parse `F=35,E=25,...,S+=0.5` into a weight per tier."""
    weights: dict[Rarity, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        tier_text, sep, weight_text = part.partition("=")
        if not sep:
            raise ValueError("comma-separated TIER=WEIGHT pairs, e.g. F=35,E=25,D=16,C=11,B=7,A=4,S=1.5,S+=0.5")
        try:
            tier = Rarity(tier_text.strip().upper())
        except ValueError:
            raise ValueError(f"tiers among F,E,D,C,B,A,S,S+ (got {tier_text.strip()!r})") from None
        if tier in weights:
            raise ValueError(f"each tier once ({tier.value} appears twice)")
        try:
            weights[tier] = float(weight_text)
        except ValueError:
            raise ValueError(f"a number for {tier.value} (got {weight_text.strip()!r})") from None
    return weights


def format_rarity_weights(weights: dict[Rarity, float]) -> str:
    return ",".join(f"{tier.value}={weights[tier]:g}" for tier in Rarity if tier in weights)


def _describe(error: Any, legacy_used: dict[str, str]) -> tuple[str, object, str]:
    location = error.get("loc") or ("settings",)
    variable = str(location[0])
    field = Settings.model_fields.get(variable)
    if field is not None and isinstance(field.validation_alias, str):
        variable = field.validation_alias
    elif field is not None and field.validation_alias is not None:
        variable = str(field.validation_alias)
    variable = legacy_used.get(variable, variable)  # the name the user set, old or new
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return variable.upper(), error.get("input"), message


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (overrides win) or raise one `ConfigError` for the first bad value."""
    try:
        return Settings(**overrides)
    except ConfigError:
        raise
    except ValidationError as exc:
        variable, value, allowed = _describe(exc.errors()[0], _with_environment(overrides)[1])
        raise ConfigError(variable, value, allowed) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; tests call `get_settings.cache_clear()` to re-read."""
    return load_settings()
