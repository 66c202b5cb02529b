"""The `local` name backend: the embedded generator, no I/O."""

from __future__ import annotations

from core import draws
from core.creature import NameOrigin
from core.health import ComponentHealth
from core.names.base import GeneratedName
from core.names.generator import LocalNameGenerator


def name_draws(seed: int) -> draws.DigestDraws:
    return draws.DigestDraws(seed, b"name")


class LocalNames:
    """Names from the embedded generator, deterministic for a seed."""

    backend = "local"

    def __init__(self, generator: LocalNameGenerator | None = None) -> None:
        self._generator = generator or LocalNameGenerator()

    async def start(self) -> None:
        return None

    def name_now(self, seed: int) -> GeneratedName:
        return GeneratedName(self._generator.generate(name_draws(seed)), NameOrigin.LOCAL)

    async def name_for(self, seed: int, *, reproducible: bool = False) -> GeneratedName:
        return self.name_now(seed)

    def health(self) -> ComponentHealth:
        return ComponentHealth(self.backend)

    async def aclose(self) -> None:
        return None
