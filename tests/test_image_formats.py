"""Formats and sizes: the encoders (deterministic, clean), the bounded cache, the files backend, the query rules."""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import threading
from functools import partial
from pathlib import Path

import pytest
from PIL import Image

from core.creature import EncodedImage, ImageFormat, Rarity, parse_format, parse_size
from core.errors import InvalidRequest, ServiceUnavailable
from core.images.base import ImageRequest
from core.images.encoding import EncodedImages, decode_png, encode_image, target_size
from core.images.files import FilesImages, load_image
from handlers.errors import answer_for
from tests.support.paths import SHIPPED_IMAGES
from tests.support.python_child import python_ok

PNG, WEBP, JPEG = ImageFormat.PNG, ImageFormat.WEBP, ImageFormat.JPEG
SIGNATURES = {PNG: b"\x89PNG\r\n\x1a\n", WEBP: b"RIFF", JPEG: b"\xff\xd8\xff"}


def shipped(index: int = 0) -> Image.Image:
    with Image.open(SHIPPED_IMAGES / f"image_{index:02d}.png") as image:
        image.load()
        return image.copy()


def png_chunks(data: bytes) -> list[bytes]:
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return chunks


def opened(image: EncodedImage) -> Image.Image:
    picture = Image.open(io.BytesIO(image.raw()))
    picture.load()
    return picture


# --- the query's rules ---


@pytest.mark.parametrize("text", ["png", "webp", "jpeg"])
def test_the_three_formats(text: str) -> None:
    assert parse_format(text) is ImageFormat(text)


@pytest.mark.parametrize("text", ["", "PNG", "Webp", "jpg", "gif", "avif", " png", "png ", "image/png", "webp\x00"])
def test_anything_else_is_not_a_format(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_format(text)
    answer = answer_for(caught.value)
    assert (answer.status_code, answer.code) == (422, "INVALID_REQUEST")
    assert "png, webp, jpeg" in answer.message


@pytest.mark.parametrize("text", ["32", "256", "2048", "0512"])
def test_sizes_in_range(text: str) -> None:
    assert parse_size(text) == int(text)


@pytest.mark.parametrize("text", ["", "31", "2049", "0", "-64", "+64", "64.0", "1e3", "6_4", " 64", "٦٤", "9" * 30])
def test_anything_else_is_not_a_size(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_size(text)
    assert "32 to 2048" in answer_for(caught.value).message


# --- the encoders ---


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (512, 512, 256, (256, 256)),
        (512, 256, 128, (128, 64)),
        (256, 512, 128, (64, 128)),
        (300, 200, 2048, (2048, 1365)),
        (1000, 3, 32, (32, 1)),  # never an empty edge
        (512, 512, None, (512, 512)),
        (640, 480, 640, (640, 480)),
    ],
)
def test_the_longest_edge_is_the_size_and_the_aspect_is_kept(
    width: int, height: int, size: int | None, expected: tuple[int, int]
) -> None:
    assert target_size(width, height, size) == expected


@pytest.mark.parametrize("image_format", list(ImageFormat))
@pytest.mark.parametrize("size", [None, 32, 256, 700])
def test_each_format_decodes_to_the_size_asked_for(image_format: ImageFormat, size: int | None) -> None:
    encoded = encode_image(shipped(), image_format, size, backend="files")
    expected = (size, size) if size else (512, 512)
    assert (encoded.width, encoded.height) == expected
    assert encoded.format is image_format and encoded.backend == "files"
    assert encoded.raw().startswith(SIGNATURES[image_format])
    picture = opened(encoded)
    assert picture.format == image_format.name and picture.size == expected
    assert encoded.json_head().startswith(b'{"imageBase64":"' + encoded.base64_image[:16])


@pytest.mark.parametrize("image_format", list(ImageFormat))
def test_the_same_pixels_give_the_same_bytes(image_format: ImageFormat) -> None:
    first = encode_image(shipped(3), image_format, 200, backend="files").raw()
    second = encode_image(shipped(3), image_format, 200, backend="files").raw()
    assert first == second


def test_the_same_bytes_in_another_process() -> None:
    """What a second server (or Lambda environment) would encode: byte for byte the same."""
    script = (
        "import hashlib, sys\n"
        "from PIL import Image\n"
        "from core.creature import ImageFormat\n"
        "from core.images.encoding import encode_image\n"
        "image = Image.open(sys.argv[1]); image.load()\n"
        "for fmt in ImageFormat:\n"
        "    print(hashlib.sha256(encode_image(image, fmt, 200, backend='files').raw()).hexdigest())\n"
    )
    path = SHIPPED_IMAGES / "image_03.png"
    completed = python_ok("-c", script, str(path))
    here = [
        hashlib.sha256(encode_image(shipped(3), fmt, 200, backend="files").raw()).hexdigest() for fmt in ImageFormat
    ]
    assert completed.stdout.split() == here


def test_nothing_of_the_source_s_metadata_reaches_the_files(tmp_path: Path) -> None:
    source = tmp_path / "tagged.png"
    from PIL import ImageCms, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "secret path /home/me")
    info.add_text("Creation Time", "Mon, 30 Nov 2026 06:00:00 GMT")
    exif = Image.Exif()
    exif[0x0132] = "2026:11:30 06:00:00"  # DateTime
    exif[0x010E] = "secret description"
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    shipped().save(source, pnginfo=info, exif=exif, icc_profile=profile)
    with Image.open(source) as tagged:
        tagged.load()
        assert {"Comment", "exif", "icc_profile"} <= set(tagged.info)
        for image_format in ImageFormat:
            data = encode_image(tagged, image_format, 100, backend="files").raw()
            assert b"secret" not in data and b"Creation" not in data and b"2026:11:30" not in data
            if image_format is PNG:
                assert set(png_chunks(data)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
            if image_format is WEBP:
                assert b"EXIF" not in data and b"XMP " not in data and b"ICCP" not in data
            if image_format is JPEG:
                assert b"Exif" not in data and b"ICC_PROFILE" not in data


def test_jpeg_shows_transparency_over_white() -> None:
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    clear.paste((0, 0, 255, 255), (0, 0, 32, 64))
    for mode_image in (clear, clear.convert("LA")):
        picture = opened(encode_image(mode_image, JPEG, None, backend="files"))
        assert picture.mode == "RGB"
        right = picture.getpixel((56, 32))
        assert isinstance(right, tuple) and min(right) >= 245  # white where the image was clear
    palette = Image.new("P", (40, 20), 0)
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.info["transparency"] = 0
    assert opened(encode_image(palette, WEBP, 80, backend="files")).size == (80, 40)  # palette images resample too


def test_the_png_encoder_sdxl_uses_can_trade_size_for_speed() -> None:
    fast = encode_image(shipped(), PNG, None, backend="sdxl", png_compress_level=1).raw()
    default = encode_image(shipped(), PNG, None, backend="sdxl").raw()
    assert len(fast) > len(default)
    assert (
        opened(EncodedImage.of(fast, 512, 512, "sdxl", PNG)).tobytes()
        == opened(EncodedImage.of(default, 512, 512, "sdxl", PNG)).tobytes()
    )


def test_an_encoded_image_keeps_its_bytes_and_decodes_them_when_built_from_base64() -> None:
    data = encode_image(shipped(), WEBP, 64, backend="files").raw()
    built = EncodedImage.of(data, 64, 64, "files", WEBP)
    assert built.raw() is data
    from_base64 = EncodedImage(built.base64_image, 64, 64, "files", WEBP)
    assert from_base64.raw() == data and from_base64 == built  # the caches are not part of the value
    assert from_base64.base64_png is from_base64.base64_image  # the former name still reads


def test_decode_png_refuses_other_formats() -> None:
    data = encode_image(shipped(), JPEG, 64, backend="files").raw()
    with pytest.raises(Exception):  # noqa: B017  (Pillow's UnidentifiedImageError)
        decode_png(data)


# --- the cache ---


def fake_image(tag: int) -> EncodedImage:
    return EncodedImage.of(bytes([tag]), 1, 1, "files", WEBP)


def test_concurrent_misses_of_one_key_encode_once() -> None:
    cache = EncodedImages(4)
    release = threading.Event()
    calls: list[int] = []

    def encode() -> EncodedImage:
        calls.append(1)
        release.wait(5)
        return fake_image(1)

    async def run() -> list[EncodedImage]:
        waiters = [asyncio.ensure_future(cache.get_or_encode("k", encode)) for _ in range(10)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(*waiters)

    results = asyncio.run(run())
    cache.close()
    assert len(calls) == 1 and cache.encodes == 1
    assert all(result is results[0] for result in results)
    assert cache.get("k") is results[0]


def test_the_least_recently_used_entry_goes_past_capacity() -> None:
    cache = EncodedImages(2)

    async def run() -> None:
        for key in ("a", "b"):
            await cache.get_or_encode(key, partial(fake_image, ord(key)))
        assert cache.get("a") is not None  # "a" used: "b" is now the least recent
        await cache.get_or_encode("c", lambda: fake_image(3))

    asyncio.run(run())
    cache.close()
    assert len(cache) == 2
    assert cache.get("a") is not None and cache.get("c") is not None and cache.get("b") is None


def test_the_cache_holds_at_most_its_bytes() -> None:
    def sized(length: int) -> EncodedImage:
        return EncodedImage.of(b"x" * length, 1, 1, "files", WEBP)

    cache = EncodedImages(100, max_bytes=1000)

    async def run() -> None:
        for key in range(5):  # each weighs 120 + 2 × 160 = 440 bytes: two fit
            await cache.get_or_encode(key, partial(sized, 120))
        huge = await cache.get_or_encode("huge", partial(sized, 900))  # served, but heavier than the whole cache
        assert len(huge.raw()) == 900

    asyncio.run(run())
    cache.close()
    assert len(cache) == 2 and cache.bytes == 880
    assert cache.get(3) is not None and cache.get(4) is not None and cache.get("huge") is None


def test_a_caller_that_goes_away_does_not_cancel_the_encode_for_the_others() -> None:
    cache = EncodedImages(4)
    release = threading.Event()

    def encode() -> EncodedImage:
        release.wait(5)
        return fake_image(7)

    async def run() -> EncodedImage:
        first = asyncio.ensure_future(cache.get_or_encode("k", encode))
        second = asyncio.ensure_future(cache.get_or_encode("k", encode))
        await asyncio.sleep(0.02)
        first.cancel()
        release.set()
        return await second

    assert asyncio.run(run()).raw() == bytes([7])
    cache.close()
    assert cache.get("k") is not None


def test_too_many_different_encodes_at_once_get_503_and_a_failure_reaches_every_waiter() -> None:
    cache = EncodedImages(8, workers=1, max_pending=2)
    release = threading.Event()

    def slow() -> EncodedImage:
        release.wait(5)
        raise OSError("disk on fire")

    async def run() -> None:
        waiters = [asyncio.ensure_future(cache.get_or_encode(key, slow)) for key in ("a", "a", "b")]
        await asyncio.sleep(0.02)
        with pytest.raises(ServiceUnavailable) as caught:
            await cache.get_or_encode("c", slow)
        assert answer_for(caught.value).status_code == 503
        release.set()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(outcome, OSError) for outcome in outcomes)
        assert await cache.get_or_encode("c", lambda: fake_image(9))  # room again, and nothing cached by failures

    asyncio.run(run())
    cache.close()
    assert len(cache) == 1


# --- the files backend ---


def request(seed: int, image_format: ImageFormat = PNG, size: int | None = None) -> ImageRequest:
    return ImageRequest(seed=seed, name="Testmon", rarity=Rarity.C, format=image_format, size=size)


def files_backend(capacity: int = 256) -> FilesImages:
    return FilesImages([load_image(SHIPPED_IMAGES / f"image_{i:02d}.png") for i in range(6)], cache_size=capacity)


def test_the_default_is_the_loaded_png_never_re_encoded() -> None:
    source = files_backend()

    async def run() -> None:
        for seed in range(20):
            loaded = source.pick(request(seed))
            assert await source.render(request(seed)) is loaded
            assert await source.render(request(seed, PNG, 512)) is loaded  # its own size is the default
            assert loaded.raw() == (SHIPPED_IMAGES / f"image_{source.images.index(loaded):02d}.png").read_bytes()
        await source.aclose()

    asyncio.run(run())
    assert source.encoded.encodes == 0


def test_each_image_format_and_size_is_encoded_once_and_kept() -> None:
    source = files_backend()

    async def run() -> None:
        first = await source.render(request(11, WEBP, 256))
        for _ in range(5):
            assert await source.render(request(11, WEBP, 256)) is first
        same_image = next(s for s in range(100) if source.pick(request(s)) is source.pick(request(11)) and s != 11)
        assert await source.render(request(same_image, WEBP, 256)) is first  # keyed by image, not by seed
        assert (first.width, first.height, first.format) == (256, 256, WEBP)
        jpeg = await source.render(request(11, JPEG))
        assert (jpeg.width, jpeg.format) == (512, JPEG)
        await source.aclose()

    asyncio.run(run())
    assert source.encoded.encodes == 2


def test_the_cache_is_bounded() -> None:
    source = files_backend(capacity=3)

    async def run() -> None:
        for size in range(40, 50):
            await source.render(request(1, WEBP, size))
        await source.aclose()

    asyncio.run(run())
    assert len(source.encoded) == 3 and source.encoded.encodes == 10


def test_the_default_path_loads_no_other_encoder() -> None:
    """WebP and JPEG support is imported on the first request for another format, never at start-up or for the
    default."""
    script = (
        "import asyncio, sys, httpx\n"
        "from core.config import load_settings\n"
        "from handlers.api import create_app\n"
        "app = create_app(load_settings(images_dir=sys.argv[1], rate_limit_per_min=0))\n"
        "async def get(query):\n"
        "    transport = httpx.ASGITransport(app=app)\n"
        "    async with httpx.AsyncClient(transport=transport, base_url='http://t') as client:\n"
        "        assert (await client.get('/v1/generate' + query)).status_code == 200\n"
        "def loaded():\n"
        "    return sorted(n for n in ('PIL.WebPImagePlugin', 'PIL.JpegImagePlugin') if n in sys.modules)\n"
        "asyncio.run(get('')); print(loaded())\n"
        "asyncio.run(get('?format=webp')); print(loaded())\n"
    )
    completed = python_ok("-c", script, str(SHIPPED_IMAGES), LOG_LEVEL="WARNING")
    lines = [line for line in completed.stdout.splitlines() if line.startswith("[")]
    assert lines[0] == "[]"
    assert "PIL.WebPImagePlugin" in lines[1]  # (Pillow's own pre-init brings JPEG along, on the encode thread)
