"""What the service asks of an image backend."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from core.creature import EncodedImage, Rarity
from core.health import ComponentHealth


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """Everything an image may depend on: the same request gives the same image."""

    seed: int
    name: str
    rarity: Rarity

    def rng(self) -> random.Random:
        return random.Random(f"image:{self.seed}")


class ImageSource(Protocol):
    @property
    def backend(self) -> str: ...

    async def start(self) -> None:
        """Load and warm up; called once before the first request or by the warm-up."""

    async def render(self, request: ImageRequest) -> EncodedImage: ...

    def health(self) -> ComponentHealth: ...

    async def aclose(self) -> None: ...
