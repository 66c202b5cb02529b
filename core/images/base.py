"""What the service asks of an image backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core import draws
from core.creature import EncodedImage, ImageFormat, Rarity
from core.health import ComponentHealth


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Everything an image may depend on: the same request gives the same image (the same bytes, for a format
    and size)."""

    seed: int
    name: str
    rarity: Rarity
    format: ImageFormat = ImageFormat.PNG
    size: int | None = None  # the longest edge in pixels; None: the backend's own size

    def unit(self) -> float:
        """A uniform draw in [0, 1) on the image stream of this seed."""
        return draws.unit(self.seed, b"image")


class ImageSource(Protocol):
    @property
    def backend(self) -> str: ...

    async def start(self) -> None:
        """Begin loading (possibly in the background); called once before the first request."""

    async def warmup(self) -> None:
        """Load and warm up now, and return when done: what a scheduled warm-up invocation calls."""

    async def render(self, request: ImageRequest) -> EncodedImage: ...

    def health(self) -> ComponentHealth: ...

    def queue_depth(self) -> int:
        """Requests waiting for the backend (0 for one that never queues)."""
        ...

    async def aclose(self) -> None: ...
