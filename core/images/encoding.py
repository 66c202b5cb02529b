"""Image formats and sizes: one deterministic encoder per format, and a bounded cache of what was encoded.

Encoders write the same bytes for the same pixels, format and size — no timestamps, no text chunks, no EXIF, no
colour profile carried over from the source — so a seeded image can be cached by anyone downstream, and two
processes (or two Lambda environments) hand out identical files.

Pillow's plugins for WebP and JPEG are imported the first time another format than the loaded PNG is asked for,
on an encode thread: a service that only serves the default, a Lambda cold start included, never loads them.
"""

from __future__ import annotations

import asyncio
import io
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from PIL import Image

from core.creature import EncodedImage, ImageFormat
from core.errors import ServiceUnavailable

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

PNG_COMPRESS_LEVEL = 6  # images encoded once and cached: the smaller file is worth the milliseconds
WEBP_QUALITY = 80
WEBP_METHOD = 4  # libwebp's speed/size trade-off (0 fastest .. 6 smallest); fixed, so output is fixed
JPEG_QUALITY = 88
JPEG_BACKGROUND = (255, 255, 255)  # JPEG has no alpha: transparent pixels are shown over white


def target_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the longest edge `size` and the aspect ratio kept; unchanged for None."""
    if size is None:
        return width, height
    longest = max(width, height)
    if longest == size:
        return width, height
    return max(1, round(width * size / longest)), max(1, round(height * size / longest))


def _plain_pixels(image: Image.Image) -> Image.Image:
    """A new RGB or RGBA image of `image`'s pixels with no metadata: what every encoder starts from.

    RGB(A) because LANCZOS cannot resample palette images and WebP and JPEG take nothing else; a new image so
    that nothing in the source's `info` (text, EXIF, ICC profile, timestamps) reaches an encoder.
    """
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    plain = image.convert("RGBA" if has_alpha else "RGB")
    plain.info = {}
    return plain


def encode_image(
    image: Image.Image,
    format: ImageFormat,
    size: int | None,
    *,
    backend: str,
    png_compress_level: int = PNG_COMPRESS_LEVEL,
) -> EncodedImage:
    """`image` resized (longest edge `size`, LANCZOS; None keeps its size) and encoded as `format`.

    CPU-bound (milliseconds to tens of milliseconds): call it on a worker thread, never on the event loop.
    """
    picture = _plain_pixels(image)
    width, height = target_size(picture.width, picture.height, size)
    if (width, height) != picture.size:
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if format is ImageFormat.PNG:
        picture.save(buffer, format="PNG", compress_level=png_compress_level)
    elif format is ImageFormat.WEBP:
        from PIL import WebPImagePlugin  # noqa: F401  (registers the encoder without Pillow's full plugin scan)

        picture.save(buffer, format="WEBP", quality=WEBP_QUALITY, method=WEBP_METHOD, lossless=False, exact=False)
    else:
        from PIL import JpegImagePlugin  # noqa: F401  (same)

        if picture.mode == "RGBA":
            background = Image.new("RGBA", picture.size, (*JPEG_BACKGROUND, 255))
            picture = Image.alpha_composite(background, picture).convert("RGB")
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    return EncodedImage.of(buffer.getvalue(), width, height, backend, format)


def decode_png(data: bytes) -> Image.Image:
    """The pixels of a PNG held in memory (the files backend keeps its images encoded, not decoded)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        image.load()
        return image.copy()


def weight(image: EncodedImage) -> int:
    """Bytes an image holds once served both ways: the file, its base64 text and the JSON head that copies it."""
    return len(image.raw()) + 2 * len(image.base64_image)


class EncodedImages:
    """Encoded images by key, the least recently used dropped past `capacity` entries or `max_bytes` (`weight`):
    a 2048 px PNG weighs ~2.5 MB, so the count alone would not bound the memory.

    A miss is encoded on this cache's own worker threads (`workers` at once), never on the event loop, and once
    however many requests wait for the same key. The encode runs as its own task: a caller that goes away (a
    closed connection) does not cancel it for the others, and its result is kept. At most `max_pending` distinct
    encodes wait at a time; past that a request gets `ServiceUnavailable` (503, retry) rather than a place in an
    ever longer queue — a caller cycling through sizes cannot make everyone wait behind it.
    """

    def __init__(
        self, capacity: int = 256, *, max_bytes: int = 64 * 2**20, workers: int = 2, max_pending: int = 64
    ) -> None:
        if capacity < 1 or max_bytes < 1 or workers < 1 or max_pending < 1:
            raise ValueError("capacity, max_bytes, workers and max_pending must be at least 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # the weight of what is held
        self._workers = workers
        self._max_pending = max_pending
        self._entries: OrderedDict[Hashable, EncodedImage] = OrderedDict()
        self._pending: dict[Hashable, asyncio.Future[EncodedImage]] = {}
        self._executor: ThreadPoolExecutor | None = None  # started on the first miss
        self.encodes = 0  # how many encodes ran: what a test of "once per key" counts

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> EncodedImage | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    async def get_or_encode(self, key: Hashable, encode: Callable[[], EncodedImage]) -> EncodedImage:
        entry = self.get(key)
        if entry is not None:
            return entry
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self._max_pending:
                raise ServiceUnavailable("too many images are being encoded; retry shortly", retry_after=1)
            pending = asyncio.ensure_future(self._encode(key, encode))
            pending.add_done_callback(_retrieve)
            self._pending[key] = pending
        return await asyncio.shield(pending)

    async def _encode(self, key: Hashable, encode: Callable[[], EncodedImage]) -> EncodedImage:
        try:
            if self._executor is None:
                # Imported here: a process that never serves another format (a cold start) never loads it.
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="image-encode")
            image = await asyncio.get_running_loop().run_in_executor(self._executor, encode)
            self.encodes += 1
            self._keep(key, image)
            return image
        finally:
            del self._pending[key]

    def _keep(self, key: Hashable, image: EncodedImage) -> None:
        size = weight(image)
        if size > self.max_bytes:
            return  # served to those who waited, never held
        self._entries[key] = image
        self.bytes += size
        while len(self._entries) > self.capacity or self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= weight(dropped)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _retrieve(future: asyncio.Future[EncodedImage]) -> None:
    # Every waiter may have gone away: read the outcome here so that a failure is not reported as "never
    # retrieved" (the waiters that remain still get it).
    if not future.cancelled():
        future.exception()
