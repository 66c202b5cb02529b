"""The shipped creature PNGs are valid, small, distinct, and exactly what pokemon/draw_creatures.py draws."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image, ImageChops, ImageStat

ART_DIR = Path(__file__).resolve().parent.parent / "pokemon"
SCRIPT = ART_DIR / "draw_creatures.py"
NAMES = [f"image_{i:02d}.png" for i in range(6)]
MAX_BYTES = 200 * 1024


def load_script() -> ModuleType:
    # pokemon/ is deliberately not a package, so the script is loaded straight from its path.
    spec = importlib.util.spec_from_file_location("draw_creatures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pixels(path: Path) -> Image.Image:
    # Compare decoded pixels, never file bytes: zlib builds differ in how they compress the same image.
    with Image.open(path) as img:
        return img.convert("RGBA")


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the script's CLI into a fresh folder once; drawing all six takes a few seconds."""
    out = tmp_path_factory.mktemp("creatures")
    assert load_script().main(["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", NAMES)
def test_shipped_image_is_a_small_512_png(name: str) -> None:
    path = ART_DIR / name
    assert path.is_file(), f"{name} missing; run: python pokemon/draw_creatures.py"
    assert path.stat().st_size < MAX_BYTES
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size == (512, 512)
        assert img.mode in {"RGB", "RGBA"}
        img.load()  # forces a full decode so a truncated file fails here, not in the service.


def test_shipped_images_are_pairwise_different() -> None:
    images = {name: pixels(ART_DIR / name) for name in NAMES}
    for a, b in itertools.combinations(NAMES, 2):
        diff = ImageChops.difference(images[a].convert("RGB"), images[b].convert("RGB"))
        # Not merely "some byte differs": six different creatures should differ a lot on average.
        assert sum(ImageStat.Stat(diff).mean) > 30, f"{a} and {b} look nearly identical"


def test_script_writes_exactly_the_six_files(redrawn: Path) -> None:
    assert sorted(path.name for path in redrawn.iterdir()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_redrawing_reproduces_shipped_pixels(redrawn: Path, name: str) -> None:
    fresh, shipped = pixels(redrawn / name), pixels(ART_DIR / name)
    assert fresh.size == shipped.size
    assert fresh.tobytes() == shipped.tobytes(), f"{name} is stale; rerun python pokemon/draw_creatures.py"
