"""The `files` image backend: a folder of PNGs read, checked and base64-encoded once at start-up.

Other formats and sizes are encoded from those PNGs the first time each (image, format, size) is asked for, on
a worker thread, and kept in a bounded cache: after the first request they cost what the default PNG costs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from core.creature import EncodedImage, ImageFormat
from core.errors import ImageFolderError
from core.health import ComponentHealth
from core.images.base import ImageRequest
from core.images.encoding import EncodedImages, decode_png, encode_image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _to_png(data: bytes) -> bytes:
    """Clients are promised PNG; other formats Pillow reads are converted once, here."""
    if data.startswith(PNG_SIGNATURE):
        return data
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()


def load_image(path: Path) -> EncodedImage:
    """Read one image; a missing or undecodable file raises `ImageFolderError` naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageFolderError(str(path.parent), f"image file {path.name} does not exist") from None
    except OSError as exc:
        raise ImageFolderError(str(path.parent), f"image file {path.name} cannot be read ({exc.strerror})") from None
    try:
        # By path rather than from `data`: Pillow then imports just the plugin the file's extension names,
        # not the five it tries on anonymous bytes (milliseconds off every start-up, a cold start included).
        with Image.open(path) as image:
            image.load()  # a full decode: a truncated or corrupt file fails here, at start-up
            width, height = image.size
        png = _to_png(data)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageFolderError(str(path.parent), f"image file {path.name} is not a readable image") from None
    return EncodedImage.of(png, width, height, "files", ImageFormat.PNG)


class FilesImages:
    """Picks one of the preloaded images; the pick is deterministic for a seed."""

    backend = "files"

    def __init__(self, images: list[EncodedImage], *, cache_size: int = 256) -> None:
        if not images:
            raise ValueError("the files backend needs at least one image")
        self._images = tuple(images)
        self._encoded = EncodedImages(cache_size)

    @classmethod
    def from_folder(cls, folder: Path, file_names: Iterable[str]) -> FilesImages:
        """Read and check every file now: a bad folder or image raises `ImageFolderError` at start-up."""
        if not folder.is_dir():
            raise ImageFolderError(str(folder), "an existing folder of images")
        return cls([load_image(folder / name) for name in file_names])

    @property
    def images(self) -> tuple[EncodedImage, ...]:
        return self._images

    @property
    def encoded(self) -> EncodedImages:
        """The cache of images in other formats and sizes."""
        return self._encoded

    def pick(self, request: ImageRequest) -> EncodedImage:
        """The loaded image for this request's seed, as loaded (PNG, its own size)."""
        return self._images[self._index(request)]

    def _index(self, request: ImageRequest) -> int:
        return int(request.unit() * len(self._images))

    async def start(self) -> None:
        return None

    async def warmup(self) -> None:
        return None  # the images were read and checked when the backend was built

    async def render(self, request: ImageRequest) -> EncodedImage:
        index = self._index(request)
        image = self._images[index]
        size = request.size
        if size is not None and size == max(image.width, image.height):
            size = None  # its own size: the same image, one cache entry (or none, for the PNG)
        if size is None and request.format is ImageFormat.PNG:
            return image  # the default: what was loaded, never re-encoded
        key = (index, request.format, size)
        cached = self._encoded.get(key)
        if cached is not None:
            return cached
        return await self._encoded.get_or_encode(key, partial(_reencode, image, request.format, size))

    def health(self) -> ComponentHealth:
        return ComponentHealth(self.backend)

    def queue_depth(self) -> int:
        return 0

    async def aclose(self) -> None:
        self._encoded.close()


def _reencode(image: EncodedImage, format: ImageFormat, size: int | None) -> EncodedImage:
    return encode_image(decode_png(image.raw()), format, size, backend=image.backend)
