"""The browser page's formats (handlers/web/): the card shows a WebP and its size, and downloads the creature
as PNG, WebP or JPEG — driven in Chromium against a real server."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image
from playwright.sync_api import Download, Page, Request, Route, expect

from tests.support.browser import PageFactory, PageProblems
from tests.support.image_magic import magic_format
from tests.support.server import ServerFactory, ServerProcess

SEED = 42
ALERT = "#alert[role=alert]"
FORMATS = {  # format -> (extension, media type, Pillow's name)
    "png": ("png", "image/png", "PNG"),
    "webp": ("webp", "image/webp", "WEBP"),
    "jpeg": ("jpg", "image/jpeg", "JPEG"),
}


def open_page(new_page: PageFactory, server: ServerProcess) -> Page:
    page = new_page()
    page.goto(server.base_url + "/")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    return page


def generate(page: Page, seed: int | None = SEED) -> Request:
    """Generate (with `seed`) and return the API request the page made."""
    if seed is not None:
        page.get_by_label("Seed").fill(str(seed))
    with page.expect_request(lambda request: "/v1/generate" in request.url) as sent:
        page.locator("#generate").click()
    expect(page.locator("#generate")).to_have_text("Generate")
    expect(page.locator("#card")).to_be_visible()
    return sent.value


def download(page: Page, fmt: str) -> Download:
    page.get_by_label("Download as").select_option(fmt)
    with page.expect_download() as started:
        page.get_by_role("button", name="Download").click()
    return started.value


def downloaded_bytes(item: Download) -> bytes:
    return Path(item.path()).read_bytes()


def test_the_page_asks_for_webp_and_shows_its_size(
    shared_server: ServerProcess, new_page: PageFactory, page_problems: PageProblems
) -> None:
    page = open_page(new_page, shared_server)
    request = generate(page)
    assert parse_qs(urlsplit(request.url).query) == {"format": ["webp"], "seed": [str(SEED)]}
    assert request.headers["accept"] == "application/json"

    with shared_server.client() as client:
        answer = client.get("/v1/generate", params={"seed": SEED, "format": "webp"}).json()
    meta = answer["metadata"]
    image_bytes = len(base64.b64decode(answer["imageBase64"]))  # the same bytes on every call
    expected = f"WebP · {meta['imageWidth']} × {meta['imageHeight']} px · {image_bytes / 1024:.1f} KB"
    expect(page.locator("#card-size")).to_have_text(expected)
    assert (meta["imageWidth"], meta["imageHeight"]) == (512, 512)
    src = page.locator("#card-image").get_attribute("src") or ""
    assert src.startswith("data:image/webp;base64,")
    assert page.eval_on_selector("#card-image", "img => img.complete && img.naturalWidth") == 512
    thumb = page.locator("#history img").first.get_attribute("src") or ""
    assert thumb.startswith("data:image/webp;base64,")

    page.get_by_label("Seed").fill("")  # no seed: still WebP, and no seed parameter
    random_request = generate(page, seed=None)
    assert parse_qs(urlsplit(random_request.url).query) == {"format": ["webp"]}
    assert page_problems == []  # no CSP violation, no script error


def test_download_in_each_format(
    shared_server: ServerProcess, new_page: PageFactory, page_problems: PageProblems
) -> None:
    page = open_page(new_page, shared_server)
    generate(page)
    name, creature_id = page.locator("#card-name").inner_text(), page.locator("#card-id").inner_text()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request) if "/v1/generate" in request.url else None)

    for fmt, (extension, media_type, pillow_name) in FORMATS.items():
        requests.clear()
        item = download(page, fmt)
        assert item.suggested_filename == f"{stem}-{creature_id}.{extension}"
        data = downloaded_bytes(item)
        assert magic_format(data) == fmt
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert (image.format, image.size) == (pillow_name, (512, 512))
        with shared_server.client() as client:  # the same creature's image, byte for byte
            served = client.get("/v1/generate", params={"seed": SEED, "format": fmt}, headers={"Accept": media_type})
        assert data == served.content
        expect(page.locator("#download-status")).to_have_text(
            f"Saved {stem}-{creature_id}.{extension} ({len(data) / 1024:.1f} KB)."
        )
        if fmt == "webp":
            assert requests == []  # the WebP on show is saved as is: no second request
        else:
            (sent,) = requests
            assert parse_qs(urlsplit(sent.url).query) == {"seed": [str(SEED)], "format": [fmt]}
            assert sent.headers["accept"] == media_type  # the image itself, not JSON
    expect(page.locator(ALERT)).to_be_empty()
    assert page_problems == []


def test_download_is_named_after_the_creature_on_show_and_sends_the_token(
    server_factory: ServerFactory, new_page: PageFactory
) -> None:
    # A language model names unseeded creatures, but a seeded request gets the server's own name for the seed:
    # the file must keep the name on the card. The first answer is given another name to stand for that case.
    server = server_factory({"POKEMON_BEARER_TOKEN": "t0ken", "POKEMON_RATE_LIMIT_PER_MIN": "0"})
    page = open_page(new_page, server)
    page.get_by_label("Access token").fill("t0ken")

    def renamed(route: Route) -> None:
        answer = route.fetch()
        body = json.loads(answer.text())
        body["metadata"]["name"] = "Khra'gzéthon Ñu"
        route.fulfill(response=answer, body=json.dumps(body, ensure_ascii=False))

    page.route("**/v1/generate?format=webp*", renamed)
    generate(page)
    expect(page.locator("#card-name")).to_have_text("Khra'gzéthon Ñu")
    creature_id = page.locator("#card-id").inner_text()

    with page.expect_request(lambda request: "format=jpeg" in request.url) as sent:
        item = download(page, "jpeg")
    assert sent.value.headers["authorization"] == "Bearer t0ken"
    assert item.suggested_filename == f"Khragzethon-Nu-{creature_id}.jpg"
    assert magic_format(downloaded_bytes(item)) == "jpeg"


def test_download_failures_are_shown(shared_server: ServerProcess, new_page: PageFactory) -> None:
    page = open_page(new_page, shared_server)
    generate(page)
    alert = page.locator(ALERT)
    button = page.get_by_role("button", name="Download")

    def limited(route: Route) -> None:
        route.fulfill(
            status=429,
            headers={"Retry-After": "30", "Content-Type": "application/json"},
            body='{"error": {"code": "RATE_LIMITED", "message": "slow down"}}',
        )

    page.route("**/v1/generate?seed=*", limited)
    page.get_by_label("Download as").select_option("png")
    button.click()
    expect(alert).to_contain_text("Try again in")
    expect(button).to_be_disabled()  # PNG needs a request: it waits for the countdown ...
    page.get_by_label("Download as").select_option("webp")
    expect(button).to_be_enabled()  # ... the WebP on show does not
    with page.expect_download() as started:
        button.click()
    assert magic_format(downloaded_bytes(started.value)) == "webp"


def test_a_download_answer_that_is_not_the_image_asked_for_is_refused(
    shared_server: ServerProcess, new_page: PageFactory
) -> None:
    page = open_page(new_page, shared_server)
    generate(page)
    downloads: list[Download] = []
    page.on("download", lambda item: downloads.append(item))
    page.route(
        "**/v1/generate?seed=*", lambda route: route.fulfill(status=200, body="<p>hi</p>", content_type="text/html")
    )
    page.get_by_label("Download as").select_option("jpeg")
    page.get_by_role("button", name="Download").click()
    expect(page.locator(ALERT)).to_contain_text("did not ask for")
    expect(page.get_by_role("button", name="Download")).to_be_enabled()
    assert downloads == []


def test_download_by_keyboard(shared_server: ServerProcess, new_page: PageFactory) -> None:
    page = open_page(new_page, shared_server)
    generate(page)
    select = page.get_by_label("Download as")
    select.focus()
    page.keyboard.press("ArrowDown")  # PNG -> WebP
    expect(select).to_have_value("webp")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Download")).to_be_focused()
    with page.expect_download() as started:
        page.keyboard.press("Enter")
    assert started.value.suggested_filename.endswith(".webp")
