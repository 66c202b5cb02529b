"""Reproducible, independent random draws derived from a creature's seed.

Each concern (name, rarity, image) draws from its own stream, so changing how one of them uses its
randomness never changes the others for the same seed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
_FLOAT_STEPS = 1 << 53
_UNIT = 2.0**-53
_BLOCK_RANGE = 1 << 512
_REFILL_BELOW = 1 << 64


def unit(seed: int, stream: bytes) -> float:
    """A uniform float in [0, 1) for `seed` on `stream` (a keyed BLAKE2b hash: far cheaper than seeding
    a Mersenne Twister when one number is all that is needed)."""
    digest = hashlib.blake2b(seed.to_bytes(8, "big"), digest_size=8, person=stream).digest()
    return (int.from_bytes(digest, "big") >> 11) * _UNIT


class Draws(Protocol):
    """The draws a consumer of a stream makes; `random.Random` provides them too."""

    def random(self) -> float: ...

    def choice(self, seq: Sequence[T]) -> T: ...


class DigestDraws:
    """Many small uniform draws for `seed` on `stream`, cut from keyed BLAKE2b blocks.

    Seeding a Mersenne Twister costs about as much as a whole creature name; one 512-bit hash block
    covers a name's dozen draws. Each draw takes `value mod n` of the pool and divides it away; a block
    is refreshed once fewer than 64 bits remain, so the modulo bias stays below n / 2^64.
    """

    __slots__ = ("_block", "_key", "_pool", "_range", "_stream")

    def __init__(self, seed: int, stream: bytes) -> None:
        self._key = seed.to_bytes(8, "big")
        self._stream = stream
        self._block = 0
        self._pool = 0
        self._range = 1

    def _below(self, n: int) -> int:
        if self._range < _REFILL_BELOW:
            block = self._key + self._block.to_bytes(4, "big")
            self._pool = int.from_bytes(hashlib.blake2b(block, digest_size=64, person=self._stream).digest(), "big")
            self._range = _BLOCK_RANGE
            self._block += 1
        self._pool, index = divmod(self._pool, n)
        self._range //= n
        return index

    def random(self) -> float:
        return self._below(_FLOAT_STEPS) * _UNIT

    def choice(self, seq: Sequence[T]) -> T:
        return seq[self._below(len(seq))]
