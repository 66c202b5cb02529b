"""Creature ids, timestamps and wire form; the files backend's start-up checks and picks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from core import wiring
from core.config import load_settings
from core.creature import Creature, EncodedImage, NameOrigin, Rarity, new_creature_id, utc_timestamp
from core.errors import ConfigError
from core.images.base import ImageRequest
from core.images.files import load_image
from tests.support.paths import SHIPPED_IMAGES


def test_ids_have_the_contract_shape_and_do_not_repeat() -> None:
    ids = {new_creature_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(re.fullmatch(r"pkm_[A-Z0-9]{12}", creature_id) for creature_id in ids)


def test_timestamps_are_utc_seconds_with_z() -> None:
    assert utc_timestamp(0) == "1970-01-01T00:00:00Z"
    assert utc_timestamp(1762980092.987) == "2025-11-12T20:41:32Z"


@given(name=st.text(min_size=1, max_size=30), seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_wire_form_is_valid_json_with_the_contract_keys(name: str, seed: int) -> None:
    image = EncodedImage(base64.b64encode(b"\x89PNG fake"), 1, 1, "files")
    creature = Creature("pkm_ABCDEFGHIJKL", name, Rarity.S_PLUS, image, "2025-11-12T20:41:32Z", seed, NameOrigin.LOCAL)
    body = json.loads(creature.to_json_bytes())
    assert body["imageBase64"] == image.base64_png.decode()
    assert body["metadata"] == {
        "id": "pkm_ABCDEFGHIJKL",
        "name": name,
        "rarity": "S+",
        "seed": seed,
        "nameSource": "local",
        "imageSource": "files",
        "imageFormat": "png",
        "imageWidth": 1,
        "imageHeight": 1,
    }
    assert body["generatedAt"] == "2025-11-12T20:41:32Z"


def _write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> None:
    Image.new("RGB", size, color).save(path)


def test_every_configured_file_is_checked(tmp_path: Path) -> None:
    for index in range(3):
        _write_png(tmp_path / f"image_{index:02d}.png", (index * 80, 0, 0))
    settings = load_settings(images_dir=tmp_path, max_index=3)
    with pytest.raises(ConfigError, match=r"image file image_03\.png does not exist"):
        wiring.build_files_images(settings)
    (tmp_path / "image_03.png").write_bytes(b"not an image at all")
    with pytest.raises(ConfigError, match=r"image file image_03\.png is not a readable image"):
        wiring.build_files_images(settings)
    (tmp_path / "image_03.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ConfigError, match=r"image_03\.png is not a readable image"):
        wiring.build_files_images(settings)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"POKEMON_IMAGES_DIR=.* an existing folder"):
        wiring.build_files_images(load_settings(images_dir=tmp_path / "nope"))


def test_other_formats_are_served_as_png(tmp_path: Path) -> None:
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "x.jpg", format="JPEG")
    image = load_image(tmp_path / "x.jpg")
    png = base64.b64decode(image.base64_png)
    assert png.startswith(b"\x89PNG")
    assert (image.width, image.height) == (20, 10)


def test_the_pattern_and_range_are_honoured(tmp_path: Path) -> None:
    for index in (7, 8, 9):
        _write_png(tmp_path / f"creature-{index}.png", (index * 20, 0, 0))
    settings = load_settings(images_dir=tmp_path, image_pattern="creature-{}.png", min_index=7, max_index=9)
    source = wiring.build_files_images(settings)
    assert len(source.images) == 3
    colors = {Image.open(io.BytesIO(base64.b64decode(image.base64_png))).getpixel((0, 0)) for image in source.images}
    assert colors == {(140, 0, 0), (160, 0, 0), (180, 0, 0)}


def test_picks_are_deterministic_and_cover_the_set() -> None:
    source = wiring.build_files_images(load_settings(images_dir=SHIPPED_IMAGES))
    seeds = range(300)
    picks = {seed: asyncio.run(source.render(ImageRequest(seed, "X", Rarity.F))) for seed in seeds}
    # Backwards, with another name and rarity: a pick that followed anything but the seed would move.
    again = {seed: asyncio.run(source.render(ImageRequest(seed, "Y", Rarity.S))) for seed in reversed(seeds)}
    assert all(again[seed] is picks[seed] for seed in seeds)
    assert {id(image) for image in picks.values()} == {id(image) for image in source.images}
    assert len(source.images) == 6


def test_images_are_encoded_once_not_per_request() -> None:
    source = wiring.build_files_images(load_settings(images_dir=SHIPPED_IMAGES))
    first = asyncio.run(source.render(ImageRequest(1, "X", Rarity.F)))
    second = asyncio.run(source.render(ImageRequest(1, "X", Rarity.F)))
    assert first.base64_png is second.base64_png


def test_id_characters_are_uniform() -> None:
    from collections import Counter

    counts = Counter("".join(new_creature_id()[4:] for _ in range(15_000)))
    expected = 15_000 * 12 / 36
    chi_square = sum((counts[character] - expected) ** 2 / expected for character in counts)
    assert len(counts) == 36
    assert chi_square < 75.0  # beyond the 0.9999 quantile for 35 degrees of freedom
