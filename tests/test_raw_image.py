"""Formats, sizes and the raw image over real connections to `python -m handlers.server`, and the same rules on
FastAPI's own route (`hot_path=False`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from core.config import load_settings
from core.creature import Creature, EncodedImage, ImageFormat, NameOrigin, Rarity
from handlers.api import create_app
from handlers.endpoint import creature_headers
from tests.support.paths import SHIPPED_IMAGES
from tests.support.server import ServerFactory, ServerProcess

CHROME_NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
CREATURE_HEADERS = {
    "x-creature-id",
    "x-creature-name",
    "x-creature-rarity",
    "x-creature-seed",
    "x-creature-name-source",
    "x-creature-image-source",
    "x-creature-generated-at",
}
SHIPPED_PNGS = {path.read_bytes() for path in SHIPPED_IMAGES.glob("image_0[0-5].png")}


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_json_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["vary"] == "Accept"
    body = response.json()
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


# --- JSON answers ---


def test_the_default_answer_keeps_its_shape(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        response = client.get("/v1/generate")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["vary"] == "Accept"
    body = response.json()
    assert list(body) == ["imageBase64", "metadata", "generatedAt"]
    assert base64.b64decode(body["imageBase64"]) in SHIPPED_PNGS  # the file itself, not a re-encoding
    metadata = body["metadata"]
    assert list(metadata)[:6] == ["id", "name", "rarity", "seed", "nameSource", "imageSource"]
    assert (metadata["imageFormat"], metadata["imageWidth"], metadata["imageHeight"]) == ("png", 512, 512)


@pytest.mark.parametrize(
    ("params", "pillow_format", "size"),
    [
        ({"format": "webp"}, "WEBP", (512, 512)),
        ({"format": "jpeg", "size": "100"}, "JPEG", (100, 100)),
        ({"format": "png", "size": "64"}, "PNG", (64, 64)),
        ({"size": "2048"}, "PNG", (2048, 2048)),
        ({"format": "webp", "size": "32"}, "WEBP", (32, 32)),
    ],
)
def test_each_format_and_size_in_json(
    shared_server: ServerProcess, params: dict[str, str], pillow_format: str, size: tuple[int, int]
) -> None:
    with shared_server.client() as client:
        body = client.get("/v1/generate", params={"seed": "77", **params}).json()
    image = picture(base64.b64decode(body["imageBase64"], validate=True))
    assert (image.format, image.size) == (pillow_format, size)
    metadata = body["metadata"]
    assert metadata["imageFormat"] == pillow_format.lower()
    assert (metadata["imageWidth"], metadata["imageHeight"]) == size


def test_webp_is_several_times_smaller(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        png = client.get("/v1/generate", params={"seed": "5"})
        webp = client.get("/v1/generate", params={"seed": "5", "format": "webp"})
        small = client.get("/v1/generate", params={"seed": "5", "format": "webp", "size": "256"})
    assert len(webp.content) * 3 < len(png.content)
    assert len(small.content) < len(webp.content)


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        ({"format": "gif"}, "png, webp, jpeg"),
        ({"format": "PNG"}, "png, webp, jpeg"),
        ({"format": ""}, "png, webp, jpeg"),
        ({"size": "31"}, "32 to 2048"),
        ({"size": "2049"}, "32 to 2048"),
        ({"size": "12.5"}, "32 to 2048"),
        ({"size": "big"}, "32 to 2048"),
        ({"size": ""}, "32 to 2048"),
    ],
)
@pytest.mark.parametrize("accept", [None, "image/png"])
def test_bad_formats_and_sizes_get_a_json_422(
    shared_server: ServerProcess, params: dict[str, str], allowed: str, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else {}
    with shared_server.client() as client:
        response = client.get("/v1/generate", params=params, headers=headers)
    assert allowed in assert_json_error(response, 422, "INVALID_REQUEST")


# --- the image itself ---


@pytest.mark.parametrize(
    ("accept", "params", "content_type"),
    [
        ("image/png", {}, "image/png"),
        ("image/webp", {}, "image/webp"),
        ("image/jpeg", {"size": "128"}, "image/jpeg"),
        ("image/*", {}, "image/png"),
        (CHROME_IMAGE, {}, "image/webp"),  # an <img src> in Chrome
        ("image/png", {"format": "webp"}, "image/webp"),  # format= wins over the subtype
        ("image/*;q=0.8, application/json;q=0.5", {"format": "jpeg"}, "image/jpeg"),
    ],
)
def test_an_accept_that_prefers_an_image_gets_the_image(
    shared_server: ServerProcess, accept: str, params: dict[str, str], content_type: str
) -> None:
    with shared_server.client() as client:
        raw = client.get("/v1/generate", params={"seed": "4242", **params}, headers={"Accept": accept})
        json_answer = client.get("/v1/generate", params={"seed": "4242", **params}).json()
    assert raw.status_code == 200
    assert raw.headers["content-type"] == content_type
    assert raw.headers["vary"] == "Accept"
    assert int(raw.headers["content-length"]) == len(raw.content)
    assert set(raw.headers) >= CREATURE_HEADERS
    assert re.fullmatch(r"[0-9a-f]{16}", raw.headers["x-request-id"])
    image = picture(raw.content)
    assert image.format == content_type.removeprefix("image/").upper()
    if "size" in params:
        assert max(image.size) == int(params["size"])
    metadata = json_answer["metadata"]
    assert re.fullmatch(r"pkm_[A-Z0-9]{12}", raw.headers["x-creature-id"])
    assert raw.headers["x-creature-id"] != metadata["id"]  # a new creature, as every call
    assert unquote(raw.headers["x-creature-name"]) == metadata["name"]
    assert raw.headers["x-creature-rarity"] == metadata["rarity"]
    assert raw.headers["x-creature-seed"] == "4242"
    assert raw.headers["x-creature-name-source"] == "local"
    assert raw.headers["x-creature-image-source"] == "files"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", raw.headers["x-creature-generated-at"])
    if content_type == "image/png" and "format" not in params and "size" not in params:
        assert raw.content in SHIPPED_PNGS
    elif metadata["imageFormat"] == content_type.removeprefix("image/"):
        assert raw.content == base64.b64decode(json_answer["imageBase64"])  # the same bytes either way


@pytest.mark.parametrize(
    "accept",
    [
        "*/*",
        "application/json",
        "application/*",
        CHROME_NAVIGATION,
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",  # Safari
        "image/avif",  # nothing we serve: the default, never 406
        "image/png, application/json",  # a tie keeps JSON
    ],
)
def test_other_accepts_keep_the_json_answer(shared_server: ServerProcess, accept: str) -> None:
    with shared_server.client() as client:
        response = client.get("/v1/generate", params={"format": "webp"}, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["vary"] == "Accept"
    assert not CREATURE_HEADERS & set(response.headers)
    assert response.json()["metadata"]["imageFormat"] == "webp"


def test_accept_lines_are_read_as_one_list(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        lines = [("Accept", "application/json;q=0.1"), ("Accept", "image/webp")]
        response = client.get("/v1/generate", headers=lines)
    assert response.status_code == 200 and response.headers["content-type"] == "image/webp"


def test_a_seed_format_and_size_give_the_same_bytes_on_every_server(
    shared_server: ServerProcess, server_factory: ServerFactory
) -> None:
    second = server_factory({"POKEMON_RATE_LIMIT_PER_MIN": "0"})
    cases = [("webp", "300"), ("jpeg", "64"), ("png", "200"), ("webp", None)]

    def digests(server: ServerProcess) -> list[str]:
        found = []
        with server.client() as client:
            for image_format, size in cases:
                params = {"seed": "9001", "format": image_format, **({"size": size} if size else {})}
                for _ in range(2):
                    raw = client.get("/v1/generate", params=params, headers={"Accept": "image/*"})
                    assert raw.status_code == 200
                    found.append(hashlib.sha256(raw.content).hexdigest())
        return found

    here, there = digests(shared_server), digests(second)
    assert here == there
    assert here[0::2] == here[1::2]  # and the same on two requests to one server
    assert len(set(here)) == len(cases)


def test_errors_stay_json_and_raw_answers_carry_the_rate_limit(server_factory: ServerFactory) -> None:
    server = server_factory({"POKEMON_BEARER_TOKEN": "tok", "POKEMON_RATE_LIMIT_PER_MIN": "2"})
    image = {"Accept": "image/png"}
    with server.client() as client:
        assert_json_error(client.get("/v1/generate", headers=image), 401, "UNAUTHORIZED")
        good = {**image, "Authorization": "Bearer tok"}
        raw = client.get("/v1/generate", headers=good)
        assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
        assert raw.headers["ratelimit-limit"] == "2" and raw.headers["ratelimit-remaining"] == "1"
        client.get("/v1/generate", headers=good)
        limited = client.get("/v1/generate", headers=good)
        assert_json_error(limited, 429, "RATE_LIMITED")
        assert limited.headers["retry-after"]


def test_the_api_document_lists_format_and_size(shared_server: ServerProcess) -> None:
    with shared_server.client() as client:
        document = client.get("/openapi.json").json()
    operation = document["paths"]["/v1/generate"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert parameters["format"]["schema"]["enum"] == ["png", "webp", "jpeg"]
    assert parameters["size"]["schema"] == {"type": "integer", "minimum": 32, "maximum": 2048}
    ok = operation["responses"]["200"]
    assert {"application/json", "image/png", "image/webp", "image/jpeg"} <= set(ok["content"])
    assert {"Vary", "X-Creature-Id", "X-Creature-Name"} <= set(ok["headers"])


# --- FastAPI's route answers alike ---

CASES: list[tuple[dict[str, str], dict[str, str]]] = [
    ({"seed": "42", "format": "webp", "size": "128"}, {}),
    ({"seed": "42", "format": "jpeg"}, {"Accept": "image/png"}),
    ({"seed": "42"}, {"Accept": CHROME_IMAGE}),
    ({"seed": "42"}, {"Accept": CHROME_NAVIGATION}),
    ({"format": "tiff"}, {"Accept": "image/png"}),
    ({"size": "4096"}, {}),
]


def _answers(hot_path: bool) -> list[tuple[int, dict[str, str], bytes]]:
    app = create_app(load_settings(images_dir=SHIPPED_IMAGES, rate_limit_per_min=0), hot_path=hot_path)

    async def run() -> list[tuple[int, dict[str, str], bytes]]:
        answers = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for params, headers in CASES:
                response = await client.get("/v1/generate", params=params, headers=headers)
                varying = ("x-request-id", "x-creature-id", "x-creature-generated-at", "content-length")
                kept = {key: value for key, value in response.headers.items() if key not in varying}
                body = re.sub(rb'"(id|generatedAt)":"[^"]+"', rb'"\1":"-"', response.content)
                answers.append((response.status_code, kept, body))
        return answers

    return asyncio.run(run())


def test_the_router_answers_as_the_hot_path() -> None:
    hot, routed = _answers(True), _answers(False)
    assert [status for status, _, _ in hot] == [200, 200, 200, 200, 422, 422]
    assert [headers["content-type"] for _, headers, _ in hot] == [
        "application/json",
        "image/jpeg",
        "image/webp",
        "application/json",
        "application/json",
        "application/json",
    ]
    assert hot == routed


# --- the headers ---


def creature_named(name: str) -> Creature:
    image = EncodedImage.of(b"\x89PNG", 1, 1, "files", ImageFormat.PNG)
    return Creature("pkm_ABCDEFGHIJKL", name, Rarity.S_PLUS, image, "2025-11-12T20:41:32Z", 7, NameOrigin.REMOTE)


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("Khra'gzathon", b"Khra%27gzathon"),
        ("Pikélou", b"Pik%C3%A9lou"),
        ("Evil\r\nSet-Cookie: x=1", b"Evil%0D%0ASet-Cookie%3A%20x%3D1"),
        ("火竜", b"%E7%81%AB%E7%AB%9C"),
    ],
)
def test_the_name_header_is_percent_encoded_utf8(name: str, header: bytes) -> None:
    headers = dict(creature_headers(creature_named(name)))
    assert headers[b"x-creature-name"] == header
    assert headers[b"x-creature-rarity"] == b"S+" and headers[b"x-creature-name-source"] == b"remote"


@given(st.text(max_size=40))
def test_no_name_can_break_a_header_line(name: str) -> None:
    value = dict(creature_headers(creature_named(name)))[b"x-creature-name"]
    assert re.fullmatch(rb"[A-Za-z0-9\-._~%]*", value)
    assert unquote(value.decode("ascii"), errors="surrogatepass") == name
