"""What the service asks of a name backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from core.creature import NameOrigin
from core.health import ComponentHealth


@dataclass(frozen=True, slots=True)
class GeneratedName:
    value: str
    origin: NameOrigin


class NameSource(Protocol):
    """Gives each creature a name; a backend that can fail falls back on its own and says so in `source`."""

    @property
    def backend(self) -> str: ...

    async def start(self) -> None:
        """Prepare (connect, fill caches); called once before the first request or by the warm-up."""

    async def name_for(self, seed: int, *, reproducible: bool = False) -> GeneratedName:
        """A name for the creature drawn with `seed`.

        `reproducible` (the caller chose the seed) asks for a name that the same seed gives again.
        """
        ...

    def health(self) -> ComponentHealth: ...

    async def aclose(self) -> None: ...
