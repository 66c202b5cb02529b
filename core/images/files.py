"""The `files` image backend: a folder of PNGs read, checked and base64-encoded once at start-up."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from core.creature import EncodedImage
from core.errors import ImageFolderError
from core.health import ComponentHealth
from core.images.base import ImageRequest

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
    return EncodedImage(base64.b64encode(png), width, height, "files")


class FilesImages:
    """Picks one of the preloaded images; the pick is deterministic for a seed."""

    backend = "files"

    def __init__(self, images: list[EncodedImage]) -> None:
        if not images:
            raise ValueError("the files backend needs at least one image")
        self._images = tuple(images)

    @classmethod
    def from_folder(cls, folder: Path, file_names: Iterable[str]) -> FilesImages:
        """Read and check every file now: a bad folder or image raises `ImageFolderError` at start-up."""
        if not folder.is_dir():
            raise ImageFolderError(str(folder), "an existing folder of images")
        return cls([load_image(folder / name) for name in file_names])

    @property
    def images(self) -> tuple[EncodedImage, ...]:
        return self._images

    def pick(self, request: ImageRequest) -> EncodedImage:
        return self._images[int(request.unit() * len(self._images))]

    async def start(self) -> None:
        return None

    async def warmup(self) -> None:
        return None  # the images were read and checked when the backend was built

    async def render(self, request: ImageRequest) -> EncodedImage:
        return self.pick(request)

    def health(self) -> ComponentHealth:
        return ComponentHealth(self.backend)

    def queue_depth(self) -> int:
        return 0

    async def aclose(self) -> None:
        return None
