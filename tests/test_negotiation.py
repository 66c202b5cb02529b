"""Accept → the JSON answer or an image type (handlers/negotiation.py), on real browsers' and clients' headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.creature import ImageFormat
from handlers.negotiation import _ranges, negotiate

PNG, WEBP, JPEG = ImageFormat.PNG, ImageFormat.WEBP, ImageFormat.JPEG
JSON = None

# What browsers send when they navigate to a URL (the address bar, a link)...
CHROME_NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
FIREFOX_NAVIGATION = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/png,image/svg+xml,*/*;q=0.8"
)
SAFARI_NAVIGATION = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# ... and for an <img src>.
CHROME_IMAGE = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX_IMAGE = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
SAFARI_IMAGE = (
    "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,"
    "image/*;q=0.8,*/*;q=0.5"
)
# What fetch() sends by default, and httpx, requests and curl.
FETCH_DEFAULT = "*/*"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        (FETCH_DEFAULT, JSON),  # curl, httpx, requests, fetch(): a tie keeps JSON
        ("application/json", JSON),
        ("application/*", JSON),
        ("application/json, */*;q=0.5", JSON),
        (CHROME_NAVIGATION, JSON),  # webp outranks */* there, but a browser navigating wants the page
        (FIREFOX_NAVIGATION, JSON),
        (SAFARI_NAVIGATION, JSON),
        ("text/html;q=0, image/png", PNG),  # refusing HTML is not navigating
        (CHROME_IMAGE, WEBP),
        (FIREFOX_IMAGE, WEBP),
        (SAFARI_IMAGE, WEBP),
        ("image/png", PNG),
        ("image/webp", WEBP),
        ("image/jpeg", JPEG),
        ("IMAGE/JPEG", JPEG),  # media types are case-insensitive
        ("image/*", PNG),  # a wildcard alone: the default format
        ("image/*, image/webp", WEBP),  # named beats a wildcard of the same quality
        ("image/webp, image/png", WEBP),  # equal quality: the first listed
        ("image/png, image/webp", PNG),
        ("image/webp;q=0.5, image/jpeg;q=0.6", JPEG),  # quality before order
        ("image/png, application/json", JSON),  # a tie with JSON keeps JSON
        ("application/json;q=0.9, image/png", PNG),
        ("*/*;q=0.5, image/jpeg", JPEG),
        ("image/png;q=0.5, */*;q=0.4", PNG),
        ("image/png;q=0, */*", JSON),  # q=0: not acceptable
        ("image/*;q=0.9, image/png;q=0, application/json;q=0.1", WEBP),  # png refused, the wildcard's next
        ("image/avif", JSON),  # nothing we serve: the default answer, never 406
        ("image/png;q=abc", JSON),  # a broken qvalue drops its range
        ("image/png;q=1.5, */*", JSON),
        ("image/png;q=0.12345", JSON),  # more than three decimals is no qvalue
        ("image/png ; q=0.8 , application/json ; q=0.7", PNG),  # whitespace around parameters
        ("image/png;charset=utf-8;q=0.8, application/json;q=0.7", PNG),  # other parameters are ignored
        ("image/png;q=0.2;level=1, */*;q=0.1", PNG),  # accept-ext after q
        ("*/png, application/json;q=0.5", JSON),  # no such range: skipped
        ("garbage, image/webp", WEBP),
        ("image/, /png, image/webp", WEBP),
        (",,,image/jpeg,,", JPEG),
    ],
)
def test_negotiation(accept: str | None, expected: ImageFormat | None) -> None:
    assert negotiate(accept) is expected


def test_the_raw_header_bytes_read_as_latin_1() -> None:
    assert negotiate(b"image/webp;q=0.9, application/json;q=0.5") is WEBP
    assert negotiate(b"image/\xe9, image/jpeg") is JPEG
    assert negotiate(b"") is JSON


def test_only_the_first_ranges_are_read() -> None:
    padding = ",".join(["application/xml"] * 64)
    assert negotiate("image/png," + padding) is PNG
    assert negotiate(padding + ",image/png") is JSON  # past the 64th range: not read


def test_ranges_are_read_in_order_lower_cased() -> None:
    assert _ranges("Image/PNG;Q=0.5, */*") == [("image", "png", 0.5), ("*", "*", 1.0)]


MEDIA_TYPES = st.sampled_from(
    ["application/json", "application/*", "image/png", "image/webp", "image/jpeg", "image/*", "*/*", "image/avif"]
)
QUALITIES = st.sampled_from(["", ";q=0", ";q=0.1", ";q=0.5", ";q=0.9", ";q=1", ";q=1.000"])


@given(st.lists(st.tuples(MEDIA_TYPES, QUALITIES), max_size=8))
def test_an_image_only_when_it_is_strictly_preferred_to_json(parts: list[tuple[str, str]]) -> None:
    accept = ", ".join(media + quality for media, quality in parts)
    chosen = negotiate(accept)
    ranges = _ranges(accept)

    def quality_of(kind: str, subtype: str) -> float:
        # A brute-force reading of RFC 9110: the most specific matching range, the first of equals.
        for wanted in ((kind, subtype), (kind, "*"), ("*", "*")):
            for range_kind, range_subtype, quality in ranges:
                if (range_kind, range_subtype) == wanted:
                    return quality
        return 0.0

    json_quality = quality_of("application", "json")
    image_qualities = {fmt: quality_of("image", fmt.media_type.split("/")[1]) for fmt in ImageFormat}
    if chosen is None:
        assert all(quality <= json_quality for quality in image_qualities.values())
    else:
        assert image_qualities[chosen] > json_quality
        assert image_qualities[chosen] == max(image_qualities.values())


@given(st.text(max_size=200))
def test_any_header_gives_an_answer(accept: str) -> None:
    assert negotiate(accept) in (None, PNG, WEBP, JPEG)
