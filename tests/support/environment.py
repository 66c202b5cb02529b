"""Which environment variables are the service's settings, and an environment for a child process without them.

Its own module, not part of server.py: tests/conftest.py needs the prefixes before it loads server.py as a
plugin, and a plugin module imported earlier would escape pytest's assertion rewriting.
"""

from __future__ import annotations

import os

# A test controls every one of these or none of them reaches the code under test.
SETTING_PREFIXES = ("POKEMON_", "SDXL_", "OPENAI_", "LOG_")


def clean_environment(**overrides: str) -> dict[str, str]:
    """The test process's environment without any setting of ours, plus `overrides`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SETTING_PREFIXES)}
    env.update(overrides)
    return env
