"""Reproducible, independent random draws derived from a creature's seed.

Each concern (name, rarity, image) draws from its own stream, so changing how one of them uses its
randomness never changes the others for the same seed.
"""

from __future__ import annotations

import hashlib
import random

_UNIT = 2.0**-53


def unit(seed: int, stream: bytes) -> float:
    """A uniform float in [0, 1) for `seed` on `stream` (a keyed BLAKE2b hash: far cheaper than seeding
    a Mersenne Twister when one number is all that is needed)."""
    digest = hashlib.blake2b(seed.to_bytes(8, "big"), digest_size=8, person=stream).digest()
    return (int.from_bytes(digest, "big") >> 11) * _UNIT


def generator(seed: int, stream: str) -> random.Random:
    """A full generator for `seed` on `stream`, for consumers that need many draws."""
    return random.Random(f"{stream}:{seed}")
