"""Content negotiation for `GET /v1/generate`: the JSON answer, or the image itself (RFC 9110 §12.5.1).

Each representation we serve — `application/json`, `image/png`, `image/webp`, `image/jpeg` — gets the quality of
the most specific media range in `Accept` that matches it (`type/subtype` over `type/*` over `*/*`, a
range's parameters other than `q` ignored); one that no range matches has quality 0. Then:

- JSON unless an image type has a strictly higher quality than JSON: a tie keeps JSON, so no `Accept`,
  `*/*`, `application/json` and `application/*` all get the JSON answer.
- An `Accept` that names `text/html` (with q > 0) is a browser navigating to the URL: JSON, whatever it
  says about images (Chrome and Firefox list `image/webp` above their `*/*`).
- Among image types of equal quality, one named outright beats one a wildcard matched, then the one whose
  range comes first in the header wins; a wildcard (`image/*`, `*/*`) alone gives PNG, the default format.
- Nothing acceptable (say `Accept: image/avif` alone): JSON, never 406 — RFC 9110 lets a server send its
  default rather than refuse, and a client that cannot take JSON can still read the error shape of every
  other answer.

`?format=` is applied by the caller: it picks the image type once an image was chosen over JSON.
A malformed range (a `q` that is no qvalue, a range that is no `type/subtype`) is skipped, never an error.
"""

from __future__ import annotations

from functools import lru_cache

from core.creature import ImageFormat

MAX_RANGES = 64  # ranges read per header: a legitimate one has a dozen; the rest is ignored
# PNG first: the answer to a wildcard. (subtype, format) pairs, in that order.
_IMAGE_TYPES = tuple((fmt.media_type.removeprefix("image/"), fmt) for fmt in ImageFormat)


def _qvalue(text: str) -> float | None:
    """An RFC 9110 qvalue (`0`, `0.5`, `1.000`...), or None when it is not one."""
    text = text.strip()
    if not text or len(text) > 5 or text[0] not in "01" or (len(text) > 1 and text[1] != "."):
        return None
    if not all(char.isdigit() for char in text[2:]) or not text.isascii():
        return None
    value = float(text)
    return value if value <= 1.0 else None


def _ranges(accept: str) -> list[tuple[str, str, float]]:
    """(type, subtype, q) per well-formed media range, in header order, lower-cased."""
    ranges = []
    for item in accept.split(",")[:MAX_RANGES]:
        media_range, *parameters = item.split(";")
        kind, slash, subtype = media_range.strip().lower().partition("/")
        if not slash or not kind or not subtype or (kind == "*" and subtype != "*"):
            continue
        quality: float | None = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                quality = _qvalue(value)
                break  # parameters after q are accept-ext: not ours
        if quality is not None:
            ranges.append((kind, subtype, quality))
    return ranges


def _quality(ranges: list[tuple[str, str, float]], kind: str, subtype: str) -> tuple[float, int, int]:
    """(quality, specificity, position) of the most specific range matching kind/subtype; (0, -1, len) when none."""
    best = (0.0, -1, len(ranges))
    for position, (range_kind, range_subtype, quality) in enumerate(ranges):
        if range_kind == kind and range_subtype == subtype:
            specificity = 2
        elif range_kind == kind and range_subtype == "*":
            specificity = 1
        elif range_kind == "*":
            specificity = 0
        else:
            continue
        if specificity > best[1]:  # the first of equally specific ranges counts, as the header lists them
            best = (quality, specificity, position)
    return best


@lru_cache(maxsize=512)
def negotiate(accept: str | bytes | None) -> ImageFormat | None:
    """The image type to answer with, or None for the JSON answer (the rules in this module's docstring).

    Takes the header as text or as its raw bytes (Latin-1, as HTTP carries it). Cached per header value: clients
    send the same few `Accept` lines over and over.
    """
    if not accept:
        return None
    ranges = _ranges(accept.decode("latin-1") if isinstance(accept, bytes) else accept)
    if not ranges:
        return None
    if any(kind == "text" and subtype == "html" and quality > 0 for kind, subtype, quality in ranges):
        return None  # a browser's navigation (named outright: `*/*` matches text/html too, and means nothing)
    json_quality = _quality(ranges, "application", "json")[0]
    best: ImageFormat | None = None
    best_key = (0.0, 0, 0, 0)
    for rank, (subtype, image_format) in enumerate(_IMAGE_TYPES):
        quality, specificity, position = _quality(ranges, "image", subtype)
        if quality <= json_quality:
            continue
        # Higher quality, then named over wildcard, then the range listed earlier, then PNG, WebP, JPEG.
        key = (quality, specificity, -position, -rank)
        if best is None or key > best_key:
            best, best_key = image_format, key
    return best
