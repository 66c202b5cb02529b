"""The value objects that flow out of the service: a creature, its rarity, its id and timestamp."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

ID_PREFIX = "pkm_"
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ID_LENGTH = 12
MAX_SEED = 2**63  # exclusive: seeds are 0 ≤ seed < 2^63


class Rarity(StrEnum):
    """Tiers from the most common (F) to the rarest (S+)."""

    F = "F"
    E = "E"
    D = "D"
    C = "C"
    B = "B"
    A = "A"
    S = "S"
    S_PLUS = "S+"


class NameSourceKind(StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


def new_creature_id() -> str:
    """`pkm_` and 12 characters of [A-Z0-9] from the OS's CSPRNG: ids must not be guessable."""
    return ID_PREFIX + "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def new_seed() -> int:
    return secrets.randbelow(MAX_SEED)


def utc_timestamp(epoch_seconds: float | None = None) -> str:
    """UTC to the second with a `Z`, e.g. `2025-11-12T20:41:32Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_seconds))


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """A PNG already base64-encoded (ASCII bytes): encoded once, copied into responses as is."""

    base64_png: bytes
    width: int
    height: int
    source: str


@dataclass(frozen=True, slots=True)
class Creature:
    id: str
    name: str
    rarity: Rarity
    image: EncodedImage
    generated_at: str
    seed: int
    name_source: NameSourceKind
    extra: dict[str, object] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "rarity": self.rarity.value,
            "seed": self.seed,
            "nameSource": self.name_source.value,
            "imageSource": self.image.source,
            **self.extra,
        }

    def to_json_bytes(self) -> bytes:
        """The wire form of `GET /v1/generate`.

        The base64 image is pure ASCII with nothing to escape, so it is spliced in as bytes rather than
        pushed through the JSON encoder: that is most of the payload.
        """
        metadata = json.dumps(self.metadata(), ensure_ascii=False, separators=(",", ":")).encode()
        return b"".join(
            (
                b'{"imageBase64":"',
                self.image.base64_png,
                b'","metadata":',
                metadata,
                b',"generatedAt":"',
                self.generated_at.encode(),
                b'"}',
            )
        )
