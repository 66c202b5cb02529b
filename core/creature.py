"""The value objects that flow out of the service: a creature, its rarity, its id and timestamp."""

from __future__ import annotations

import base64
import os
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import InvalidRequest
from core.jsonfast import compact_json

ID_PREFIX = "pkm_"
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ID_LENGTH = 12
MAX_SEED = 2**63  # exclusive: seeds are 0 ≤ seed < 2^63


SEED_RULE = "seed must be an integer with 0 ≤ seed < 2^63, in plain decimal digits"


def parse_seed(text: str) -> int:
    """A seed written in plain decimal digits; "+5", "1_000" or "1.0" are refused (`InvalidRequest`, a
    ValueError) rather than guessed at."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) >= MAX_SEED:
        raise InvalidRequest(SEED_RULE)
    return int(text)


class ImageFormat(StrEnum):
    """How the image is encoded (`?format=`, `metadata.imageFormat`); PNG is the description's, the default."""

    PNG = "png"
    WEBP = "webp"
    JPEG = "jpeg"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"  # each value is its IANA subtype


MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 2048
FORMAT_RULE = "format must be one of png, webp, jpeg (lower case)"
SIZE_RULE = (
    f"size must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} (the longest edge in pixels),"
    " in plain decimal digits"
)


def parse_format(text: str) -> ImageFormat:
    """`png`, `webp` or `jpeg`, exactly: one spelling per format, so one cache entry and one URL per image."""
    try:
        return ImageFormat(text)
    except ValueError:
        raise InvalidRequest(FORMAT_RULE) from None


def parse_size(text: str) -> int:
    """The longest edge in pixels, plain decimal digits within [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]."""
    if not (text.isascii() and text.isdigit()) or len(text) > 8 or not MIN_IMAGE_SIZE <= int(text) <= MAX_IMAGE_SIZE:
        raise InvalidRequest(SIZE_RULE)
    return int(text)


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


class NameOrigin(StrEnum):
    """Where a creature's name came from: the embedded generator or the model (`metadata.nameSource`)."""

    LOCAL = "local"
    REMOTE = "remote"


_ID_ACCEPTED = 252  # the largest multiple of 36 that fits in a byte
_ID_CHARACTERS = bytes(ord(ID_ALPHABET[byte % len(ID_ALPHABET)]) for byte in range(256))
_ID_REJECTED = bytes(range(_ID_ACCEPTED, 256))
# Seeds are handed back to callers and may be replayed at will: they need to be well spread, not secret,
# so a seeded PRNG serves them without a system call per request.
_seeds = random.Random(secrets.randbits(128))


class _SecureBytes:
    """Bytes from the OS's CSPRNG, fetched a block at a time.

    Each `os.urandom` call is a system call, which costs microseconds on some virtual machines; one per
    256 ids keeps that off the request path. The block is dropped in a forked child, so two processes
    never hand out the same bytes.
    """

    def __init__(self, block_size: int = 4096) -> None:
        self._block_size = block_size
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._block, self._offset = b"", 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._block):
                self._block, self._offset = os.urandom(max(self._block_size, count)), 0
            start = self._offset
            self._offset += count
            return self._block[start : self._offset]


_secure_bytes = _SecureBytes()


def new_creature_id() -> str:
    """`pkm_` and 12 characters of [A-Z0-9] from the OS's CSPRNG: ids must not be guessable.

    Each random byte below 252 (= 7 × 36) maps to one character, uniformly; the rare byte above is
    dropped (rejection sampling), and `bytes.translate` does the mapping and the dropping in one C call.
    """
    characters = b""
    while len(characters) < ID_LENGTH:
        characters += _secure_bytes.take(16).translate(_ID_CHARACTERS, _ID_REJECTED)
    return ID_PREFIX + characters[:ID_LENGTH].decode("ascii")


def new_seed() -> int:
    return _seeds.getrandbits(63)


# The last second formatted and its text: every creature made within one second shares it, and strftime is
# the costliest step of a timestamp. One tuple, so that threads always read a matching pair.
_last_timestamp: tuple[int, str] = (-1, "")


def utc_timestamp(epoch_seconds: float | None = None) -> str:
    """UTC to the second with a `Z`, e.g. `2025-11-12T20:41:32Z`."""
    global _last_timestamp
    second = int((time.time() if epoch_seconds is None else epoch_seconds) // 1)  # gmtime's rounding: down
    last_second, text = _last_timestamp
    if second != last_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        _last_timestamp = (second, text)
    return text


@dataclass(frozen=True, slots=True)
class EncodedImage:
    """An encoded image (PNG unless `format` says otherwise), base64-encoded as ASCII bytes: encoded once, copied
    into responses as is. Its raw bytes (for answers that send the image itself) are kept alongside when it was
    built with `of`, else decoded on first use."""

    base64_image: bytes
    width: int
    height: int
    backend: str  # the image backend that made it: `files`, `sdxl`
    format: ImageFormat = ImageFormat.PNG
    _json_head: bytes = field(default=b"", init=False, repr=False, compare=False)
    _raw: bytes = field(default=b"", init=False, repr=False, compare=False)

    @classmethod
    def of(cls, data: bytes, width: int, height: int, backend: str, format: ImageFormat) -> EncodedImage:
        """The image whose encoded file is `data`: base64-encoded now, by whoever calls (a worker thread)."""
        image = cls(base64.b64encode(data), width, height, backend, format)
        object.__setattr__(image, "_raw", data)
        return image

    @property
    def base64_png(self) -> bytes:
        """`base64_image` under its name from before other formats existed (a PNG only when `format` is png)."""
        return self.base64_image

    def raw(self) -> bytes:
        """The encoded file itself, e.g. the PNG's bytes."""
        data = self._raw
        if not data:
            data = base64.b64decode(self.base64_image)
            object.__setattr__(self, "_raw", data)  # a cache, as `_json_head`
        return data

    def json_head(self) -> bytes:
        """`{"imageBase64":"<this image>","metadata":`, the first part of every response showing it; built once."""
        head = self._json_head
        if not head:
            head = b'{"imageBase64":"' + self.base64_image + b'","metadata":'
            object.__setattr__(self, "_json_head", head)  # a cache: frozen for callers, not for itself
        return head


@dataclass(frozen=True, slots=True)
class Creature:
    id: str
    name: str
    rarity: Rarity
    image: EncodedImage
    generated_at: str
    seed: int
    name_origin: NameOrigin
    extra: dict[str, object] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "rarity": self.rarity,  # StrEnums encode as their text; `.value` is a slow descriptor
            "seed": self.seed,
            "nameSource": self.name_origin,
            "imageSource": self.image.backend,
            "imageFormat": self.image.format,
            "imageWidth": self.image.width,
            "imageHeight": self.image.height,
            **self.extra,
        }

    def to_json_parts(self) -> tuple[bytes, bytes]:
        """The wire form of `GET /v1/generate` in two parts, to be sent one after the other.

        The first is the image's JSON head, shared by every response that shows the image; the second is
        the rest (metadata and time), a few hundred bytes. Joining them would copy the image, most of the
        payload, on every request. The base64 image is pure ASCII with nothing to escape, so it goes into
        the head as is rather than through the JSON encoder.
        """
        metadata = compact_json(self.metadata()).encode()
        return self.image.json_head(), b"".join((metadata, b',"generatedAt":"', self.generated_at.encode(), b'"}'))

    def to_json_bytes(self) -> bytes:
        """The wire form of `GET /v1/generate` in one piece."""
        return b"".join(self.to_json_parts())
