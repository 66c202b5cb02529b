"""The tiny SDXL folder from tests/support/tiny_sdxl.py builds, loads through the real diffusers loader, and generates.

Other tests lean on these properties (seeded, batch-stable, offline), so they are pinned here rather than assumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

# diffusers and torch come with the optional `diffusion` extra; without them there is nothing here to test.
pytest.importorskip("diffusers")

import numpy as np
import numpy.typing as npt
import torch

# From their own modules: to type checkers, `from diffusers import X` is diffusers' placeholder for a missing torch.
from diffusers.pipelines.auto_pipeline import AutoPipelineForText2Image
from diffusers.pipelines.stable_diffusion_xl.pipeline_output import StableDiffusionXLPipelineOutput
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
from PIL import Image

from tests.support.tiny_sdxl import build_tiny_sdxl

PROMPT = "a small fire lizard, pixel art"
SEED_A = 1234
SEED_B = 98765
SIDE = 64
# Batched and single convolutions may sum in a different order, so uint8 pixels can move by a level or two.
BATCH_TOLERANCE = 2


def load(folder: Path) -> StableDiffusionXLPipeline:
    """Loads `folder` the way a service would: through the auto pipeline, offline, fp32 on CPU."""
    pipe = AutoPipelineForText2Image.from_pretrained(
        folder, local_files_only=True, dtype=torch.float32, add_watermarker=False
    )
    assert isinstance(pipe, StableDiffusionXLPipeline), type(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    pipe: StableDiffusionXLPipeline, seeds: list[int], *, width: int = SIDE, height: int = SIDE
) -> list[Image.Image]:
    """One image per seed from a single pipeline call, with SDXL Turbo's settings (one step, no guidance)."""
    result = pipe(
        prompt=[PROMPT] * len(seeds),
        num_inference_steps=1,
        guidance_scale=0.0,
        width=width,
        height=height,
        generator=[torch.Generator().manual_seed(seed) for seed in seeds],
        output_type="pil",
    )
    assert isinstance(result, StableDiffusionXLPipelineOutput)
    assert isinstance(result.images, list)
    return result.images


def pixels(image: Image.Image) -> npt.NDArray[np.int16]:
    # int16 so that differences of uint8 values do not wrap around.
    return np.asarray(image, dtype=np.int16)


@dataclass(frozen=True)
class Generated:
    """Images made once for the module: each generation costs tens of milliseconds, the pipeline load more."""

    alone_a: Image.Image
    alone_a_again: Image.Image
    alone_b: Image.Image
    batch_ab: list[Image.Image]


@pytest.fixture(scope="module")
def pipe(tiny_sdxl_dir: Path) -> StableDiffusionXLPipeline:
    return load(tiny_sdxl_dir)


@pytest.fixture(scope="module")
def generated(pipe: StableDiffusionXLPipeline) -> Generated:
    [alone_a] = generate(pipe, [SEED_A])
    [alone_a_again] = generate(pipe, [SEED_A])
    [alone_b] = generate(pipe, [SEED_B])
    return Generated(alone_a, alone_a_again, alone_b, generate(pipe, [SEED_A, SEED_B]))


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_folder_has_an_sdxl_layout(tiny_sdxl_dir: Path) -> None:
    index = json.loads((tiny_sdxl_dir / "model_index.json").read_text(encoding="utf-8"))
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert (tiny_sdxl_dir / part).is_dir(), part
    assert (tiny_sdxl_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_folder_is_small(tiny_sdxl_dir: Path) -> None:
    assert folder_bytes(tiny_sdxl_dir) < 10 * 1024 * 1024


def test_build_is_seeded_and_leaves_the_global_rng_alone(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    weights = Path("unet") / "diffusion_pytorch_model.safetensors"
    rng_before = torch.random.get_rng_state()

    same = build_tiny_sdxl(tmp_path / "same", seed=0)
    other = build_tiny_sdxl(tmp_path / "other", seed=1)

    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert (same / weights).read_bytes() == (tiny_sdxl_dir / weights).read_bytes()
    assert (other / weights).read_bytes() != (tiny_sdxl_dir / weights).read_bytes()


def test_loads_offline_as_an_sdxl_turbo_style_pipeline(pipe: StableDiffusionXLPipeline) -> None:
    assert isinstance(pipe.scheduler, EulerAncestralDiscreteScheduler)
    assert pipe.scheduler.config["timestep_spacing"] == "trailing"
    assert pipe.unet.dtype == torch.float32
    assert pipe.vae_scale_factor == 8
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.tokenizer_2.model_max_length == 77


def test_missing_folder_fails_instead_of_reaching_for_the_hub(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        load(tmp_path / "no-such-model")


def test_generates_pil_images_of_the_requested_size(pipe: StableDiffusionXLPipeline, generated: Generated) -> None:
    assert generated.alone_a.size == (SIDE, SIDE)
    assert generated.alone_a.mode == "RGB"
    # Not square and not the saved default size, so width and height are really being honoured.
    [wide] = generate(pipe, [SEED_A], width=2 * SIDE, height=SIDE)
    assert wide.size == (2 * SIDE, SIDE)
    # Random weights still have to turn noise into varied pixels, or the seed comparisons below prove nothing.
    assert pixels(generated.alone_a).std() > 10


def test_same_seed_gives_identical_pixels(generated: Generated) -> None:
    assert np.array_equal(pixels(generated.alone_a), pixels(generated.alone_a_again))


def test_each_batch_item_matches_its_seed_generated_alone(generated: Generated) -> None:
    batch_a, batch_b = generated.batch_ab
    assert np.abs(pixels(batch_a) - pixels(generated.alone_a)).max() <= BATCH_TOLERANCE
    assert np.abs(pixels(batch_b) - pixels(generated.alone_b)).max() <= BATCH_TOLERANCE


def test_different_seeds_give_different_images(generated: Generated) -> None:
    # Far above the batch tolerance: different noise, not rounding.
    assert np.abs(pixels(generated.alone_a) - pixels(generated.alone_b)).mean() > 10
