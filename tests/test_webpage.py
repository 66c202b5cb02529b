"""The browser page (`GET /`, handlers/webpage.py + handlers/web/) against a real server, in Chromium.

Assumes `create_app` calls `add_web_page(app)`. The screenshot of a generated creature is written to
`artifacts/webpage.png` (git-ignored) for a human to look at.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from tests.support.browser import PHONE, PageFactory, PageProblems
from tests.support.paths import REPO
from tests.support.server import ServerFactory, ServerProcess

ARTIFACTS = REPO / "artifacts"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'"
SEED = 42
ALERT = "#alert[role=alert]"  # empty (and hidden) when all is well


def open_page(new_page: PageFactory, server: ServerProcess, **kwargs: object) -> Page:
    page = new_page(**kwargs)
    page.goto(server.base_url + "/")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    return page


def generate(page: Page) -> None:
    """Click Generate and wait until the answer is handled (the button is idle again)."""
    button = page.locator("#generate")
    with page.expect_response(lambda response: "/v1/generate" in response.url):
        button.click()
    expect(button).not_to_have_text("Generating…")


def image_decoded(page: Page, selector: str = "#card-image") -> bool:
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def save_screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, animations="disabled")


def test_page_and_static_files_are_served_with_strict_headers(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-cache"
        assert client.get("/", headers={"If-None-Match": page.headers["etag"]}).status_code == 304
        for file, media_type in (("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")):
            static = client.get(f"/static/{file}")
            assert static.status_code == 200, file
            assert static.headers["content-type"].startswith(media_type)
            assert static.headers["x-content-type-options"] == "nosniff"
        for missing in ("/static/index.html", "/static/nope.js", "/static/..%2Fwebpage.py"):
            refused = client.get(missing)
            assert refused.status_code == 404, missing
            assert refused.json()["error"]["code"] == "NOT_FOUND"
        paths = client.get("/openapi.json").json()["paths"]
        assert "/" not in paths
        assert not any(path.startswith("/static") for path in paths)


def test_generate_with_a_seed_shows_the_apis_creature(
    shared_server: ServerProcess, new_page: PageFactory, page_problems: PageProblems
) -> None:
    page = open_page(new_page, shared_server)
    page.get_by_label("Seed").fill(str(SEED))
    generate(page)

    with shared_server.client() as client:
        expected = client.get("/v1/generate", params={"seed": SEED}).json()["metadata"]
    card = page.locator("#card")
    expect(card).to_be_visible()
    expect(page.locator("#card-name")).to_have_text(expected["name"])
    expect(page.locator("#card-rarity")).to_have_text(expected["rarity"])
    expect(page.locator("#card-seed")).to_have_text(str(SEED))
    expect(page.locator("#card-name-source")).to_have_text(expected["nameSource"])
    expect(page.locator("#card-id")).to_have_text(re.compile(r"^pkm_[A-Z0-9]{12}$"))
    expect(page.locator("#card-image")).to_have_attribute(
        "alt", f"{expected['name']}, a creature of rarity {expected['rarity']}"
    )
    assert image_decoded(page)
    expect(page.locator(ALERT)).to_be_empty()
    save_screenshot(page, "webpage.png")
    assert page_problems == []


def test_history_strip_grows_and_shows_a_creature_again(shared_server: ServerProcess, new_page: PageFactory) -> None:
    page = open_page(new_page, shared_server)
    seed = page.get_by_label("Seed")
    names: list[str] = []
    for value in ("1", "2", "3"):
        seed.fill(value)
        with page.expect_response(lambda response: "/v1/generate" in response.url):
            seed.press("Enter")  # Enter in the seed field generates
        expect(page.locator("#history li")).to_have_count(len(names) + 1)
        names.append(page.locator("#card-name").inner_text())
    thumbs = page.locator("#history .thumb")
    assert image_decoded(page, "#history li:last-child img")
    thumbs.last.click()  # the oldest: seed 1
    expect(page.locator("#card-name")).to_have_text(names[0])
    expect(page.locator("#card-seed")).to_have_text("1")
    expect(thumbs.last).to_have_attribute("aria-current", "true")
    expect(page.locator("#history li")).to_have_count(3)


def test_token_flow(server_factory: ServerFactory, new_page: PageFactory) -> None:
    server = server_factory({"POKEMON_BEARER_TOKEN": "s3cret-token", "POKEMON_RATE_LIMIT_PER_MIN": "0"})
    page = open_page(new_page, server)
    generate(page)
    alert = page.locator(ALERT)
    expect(alert).to_contain_text("needs an access token")
    token = page.get_by_label("Access token")
    expect(token).to_be_focused()
    expect(token).to_have_attribute("aria-invalid", "true")

    token.fill("wrong")
    generate(page)
    expect(alert).to_contain_text("did not accept")

    token.fill("s3cret-token")
    generate(page)
    expect(page.locator("#card-name")).not_to_be_empty()
    expect(alert).to_be_empty()
    stored = page.evaluate("() => [JSON.stringify(sessionStorage), localStorage.length]")
    assert "s3cret-token" in stored[0]
    assert stored[1] == 0
    # A reload in the same tab keeps the token; a new tab (context) does not have it.
    page.reload()
    expect(page.get_by_label("Access token")).to_have_value("s3cret-token")
    expect(open_page(new_page, server).get_by_label("Access token")).to_have_value("")


def test_rate_limited_click_shows_a_countdown(server_factory: ServerFactory, new_page: PageFactory) -> None:
    server = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "1"})
    page = open_page(new_page, server)
    generate(page)
    expect(page.locator("#card-name")).not_to_be_empty()
    with page.expect_response(lambda response: "/v1/generate" in response.url) as answer:
        page.locator("#generate").click()
    assert answer.value.status == 429
    expect(page.locator(ALERT)).to_contain_text("Try again in")
    expect(page.get_by_role("button", name="Generate")).to_be_disabled()


def test_busy_and_network_errors_are_shown(shared_server: ServerProcess, new_page: PageFactory) -> None:
    page = open_page(new_page, shared_server)
    alert = page.locator(ALERT)

    def busy(route: Route) -> None:
        route.fulfill(
            status=503,
            headers={"Retry-After": "2", "Content-Type": "application/json"},
            body='{"error": {"code": "SERVICE_UNAVAILABLE", "message": "busy"}}',
        )

    page.route("**/v1/generate**", busy)
    generate(page)
    expect(alert).to_contain_text("warming up or busy")
    expect(alert.get_by_role("button", name="Retry")).to_be_visible()

    page.unroute("**/v1/generate**")
    page.route("**/v1/generate**", lambda route: route.abort())
    page.locator("#generate").click()
    expect(alert).to_contain_text("Could not reach the server")

    page.unroute("**/v1/generate**")
    alert.get_by_role("button", name="Retry").click()
    expect(page.locator("#card-name")).not_to_be_empty()
    expect(alert).to_be_empty()


def test_bad_seed_is_caught_before_calling(shared_server: ServerProcess, new_page: PageFactory) -> None:
    page = open_page(new_page, shared_server)
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url) if "/v1/generate" in request.url else None)
    seed = page.get_by_label("Seed")
    seed.fill("9223372036854775808")  # 2^63
    seed.press("Enter")
    expect(page.locator(ALERT)).to_contain_text("whole number")
    expect(seed).to_be_focused()
    assert calls == []


def test_phone_width_has_no_horizontal_scroll(
    shared_server: ServerProcess, new_page: PageFactory, page_problems: PageProblems
) -> None:
    page = open_page(new_page, shared_server, viewport=PHONE)
    page.get_by_label("Seed").fill("7")
    generate(page)
    expect(page.locator("#card")).to_be_visible()
    assert image_decoded(page)
    width = page.evaluate("() => document.scrollingElement.scrollWidth")
    assert width <= PHONE["width"], width
    save_screenshot(page, "webpage-phone.png")
    assert page_problems == []


def test_countdown_ends_and_the_button_comes_back(shared_server: ServerProcess, new_page: PageFactory) -> None:
    page = open_page(new_page, shared_server)
    page.route(
        "**/v1/generate**",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "1", "Content-Type": "application/json"},
            body='{"error": {"code": "RATE_LIMITED", "message": "slow down"}}',
        ),
    )
    generate(page)
    expect(page.locator(ALERT)).to_contain_text("Try again in 1 s")
    expect(page.locator("#generate")).to_be_disabled()
    expect(page.locator("#generate")).to_be_enabled(timeout=3_000)
    expect(page.locator(ALERT)).to_be_empty()
