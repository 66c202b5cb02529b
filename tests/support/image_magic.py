"""Which image format a file really is, read from its first bytes, whatever its name or Content-Type says."""

from __future__ import annotations


def magic_format(data: bytes) -> str | None:
    """ "png", "webp" or "jpeg" by the file's signature; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return None
