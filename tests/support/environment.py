"""Which environment variables are the service's settings, and an environment for a child process without them.

Its own module, not part of server.py: tests/conftest.py needs the prefixes before it loads server.py as a
plugin, and a plugin module imported earlier would escape pytest's assertion rewriting.
"""

from __future__ import annotations

import os

# A test controls every one of these or none of them reaches the code under test.
SETTING_PREFIXES = ("POKEMON_", "SDXL_", "OPENAI_", "LOG_")


def setting_variables() -> set[str]:
    """Every variable a setting reads: its validation alias (or each of its alias choices)."""
    from core.config import Settings  # here, not at the top: conftest imports this module before anything else

    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None:
            names.update(choice for choice in getattr(alias, "choices", ()) if isinstance(choice, str))
    return names


def clean_environment(**overrides: str) -> dict[str, str]:
    """The test process's environment without any setting of ours, plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTING_PREFIXES)}
    env.update(overrides)
    return env


# boto3 pointed at a loopback endpoint (moto, a silent server): dummy credentials, and none of the machine's
# own AWS configuration or instance metadata.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
