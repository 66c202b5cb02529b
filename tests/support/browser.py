"""Browser fixtures: Debian's Chromium (`/usr/bin/chromium`) driven by Playwright for Python.

The fixtures are `browser`, `new_page` and `page_problems`, registered for every test module by tests/conftest.py
(the functions are named `*_fixture` so that a fixture's parameter does not shadow another fixture's function).

Playwright's own browser downloads are never used: the browser is the system package, which `make test`
installs (`apt-get install -y chromium`). A missing browser fails the tests loudly instead of skipping them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    # Every test session loads this plugin; only the browser tests should pay for importing Playwright.
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}

PageFactory = Callable[..., "Page"]


# Module scope, not session: while Playwright's sync API is open the main thread counts as running an
# event loop, and every later test that calls asyncio.run would fail.
@pytest.fixture(scope="module", name="browser")
def browser_fixture() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Run the README's test command, "
            "`make test`, which installs it (apt-get install -y chromium).",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class PageProblems(list[str]):
    """Console errors and uncaught exceptions seen by a page (CSP violations included)."""

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.append(f"console: {message.text}")

    def on_error(self, error: Exception) -> None:
        self.append(f"page error: {error}")


@pytest.fixture(name="page_problems")
def page_problems_fixture() -> PageProblems:
    return PageProblems()


@pytest.fixture(name="new_page")
def new_page_fixture(browser: Browser, page_problems: PageProblems) -> Iterator[PageFactory]:
    """`new_page(viewport=PHONE)`: a page in a fresh browser context (its own session storage)."""
    contexts: list[BrowserContext] = []

    def factory(viewport: ViewportSize = DESKTOP) -> Page:
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", page_problems.on_console)
        page.on("pageerror", page_problems.on_error)
        return page

    yield factory
    for context in contexts:
        context.close()
