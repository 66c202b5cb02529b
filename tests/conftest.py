"""Clean settings and quiet logs for every test; the shared fixtures come from tests/support as plugins."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from core.config import get_settings
from core.eventlog import configure_logging
from tests.support.environment import SETTING_PREFIXES
from tests.support.paths import SHIPPED_IMAGES

# Fixtures by name, available to every test module without an import.
pytest_plugins = [
    "tests.support.server",  # server_factory, shared_server: the service as a real process
    "tests.support.fake_llm",  # fake_llm, llm: a real OpenAI-compatible server process
    "tests.support.tiny_sdxl",  # tiny_sdxl_dir: a tiny random SDXL pipeline on disk
    "tests.support.tiny_sd3",  # tiny_sd3_dir: a tiny random SD3 pipeline on disk
    "tests.support.tiny_flux",  # tiny_flux_dir: a tiny random Flux pipeline on disk
    "tests.support.redis_server",  # redis_server: Debian's redis-server on a free loopback port
    "tests.support.browser",  # browser, new_page, page_problems: Chromium through Playwright
]

# No model hub is reachable: every from_pretrained must resolve locally, here and in server processes.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """In-process tests log into a sink; tests that read log lines configure their own stream."""
    configure_logging(stream=io.StringIO(), background=False)
    yield
    configure_logging(stream=io.StringIO(), background=False)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process tests see only the settings they set."""
    for key in list(os.environ):
        if key.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(key)
    monkeypatch.setenv("POKEMON_IMAGES_DIR", str(SHIPPED_IMAGES))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
