"""The SDXL_* loading options on the tiny random pipeline: what `load_pipeline` makes of each, on CPU.

Options come from `Settings` through `wiring.pipeline_options`, so a setting dropped on its way from the
environment to the pipeline shows here as well as one that `load_pipeline` ignores.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core import wiring
from core.config import Settings, load_settings
from core.creature import EncodedImage
from core.eventlog import configure_logging, flush_logs
from core.images.diffusion import (
    BatchOptions,
    DiffusionImages,
    DiffusionRunner,
    ImageJob,
    PipelineOptions,
    load_pipeline,
)

if TYPE_CHECKING:
    import torch


def sdxl_settings(model: Path, **overrides: Any) -> Settings:
    # SDXL_DEVICE=cpu: the "auto" choices are then the CPU ones on every machine, a GPU one included.
    chosen: dict[str, Any] = {"sdxl_width": 64, "sdxl_height": 64, "sdxl_device": "cpu", **overrides}
    return load_settings(generation_backend="sdxl", sdxl_model=str(model), **chosen)


def options(model: Path, **overrides: Any) -> PipelineOptions:
    return wiring.pipeline_options(sdxl_settings(model, **overrides))


@pytest.mark.parametrize(("setting", "sliced"), [("1", True), ("0", False), ("auto", False)])
def test_attention_slicing(tiny_sdxl_dir: Path, setting: str, sliced: bool) -> None:
    from diffusers.models.attention_processor import SlicedAttnProcessor

    pipeline = load_pipeline(options(tiny_sdxl_dir, sdxl_attention_slicing=setting))
    processors = list(pipeline.unet.attn_processors.values())
    assert processors  # the tiny UNet has attention blocks, so the check below is about something
    assert {isinstance(processor, SlicedAttnProcessor) for processor in processors} == {sliced}


@pytest.fixture(scope="module")
def other_vae(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A VAE shaped like the tiny pipeline's, with other random weights and `force_upcast` off, in its own folder."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    config = AutoencoderKL.load_config(tiny_sdxl_dir / "vae")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        vae = AutoencoderKL.from_config({**config, "force_upcast": False})
    folder = tmp_path_factory.mktemp("other-vae")
    vae.save_pretrained(folder)
    weights: dict[str, torch.Tensor] = {key: value.clone() for key, value in vae.state_dict().items()}
    return folder, weights


def test_sdxl_vae_replaces_the_models_vae(tiny_sdxl_dir: Path, other_vae: tuple[Path, dict[str, torch.Tensor]]) -> None:
    import torch

    folder, saved = other_vae
    own = load_pipeline(options(tiny_sdxl_dir)).vae.state_dict()
    loaded = load_pipeline(options(tiny_sdxl_dir, sdxl_vae=str(folder))).vae.state_dict()
    assert loaded.keys() == saved.keys()
    assert all(torch.equal(loaded[key], saved[key]) for key in saved)
    assert not all(torch.equal(own[key], saved[key]) for key in saved)  # the two VAEs can be told apart


@pytest.mark.parametrize("upcast", [True, False])
def test_sdxl_vae_upcast(tiny_sdxl_dir: Path, other_vae: tuple[Path, dict[str, torch.Tensor]], upcast: bool) -> None:
    # This VAE's own config says False, so only the setting can make it True.
    pipeline = load_pipeline(options(tiny_sdxl_dir, sdxl_vae=str(other_vae[0]), sdxl_vae_upcast=upcast))
    assert pipeline.vae.config.force_upcast is upcast


def test_compile_wraps_the_denoiser(tiny_sdxl_dir: Path) -> None:
    # torch.compile only wraps the module here; the compilation itself would happen on the first call.
    from torch._dynamo.eval_frame import OptimizedModule

    plain = load_pipeline(options(tiny_sdxl_dir)).unet
    compiled = load_pipeline(options(tiny_sdxl_dir, sdxl_compile=True)).unet
    assert not isinstance(plain, OptimizedModule)
    assert isinstance(compiled, OptimizedModule)
    assert type(getattr(compiled, "_orig_mod", None)) is type(plain)


Runner = Callable[[Sequence[ImageJob]], list[EncodedImage]]


@pytest.mark.parametrize(("compile", "sizes"), [(True, [1, 4]), (False, [1])])
def test_warm_up_covers_the_largest_batch_when_compiling(tiny_sdxl_dir: Path, compile: bool, sizes: list[int]) -> None:
    settings = sdxl_settings(tiny_sdxl_dir, sdxl_compile=compile, max_batch=4)

    def uncompiled(current: PipelineOptions) -> Any:
        # Compiling for real takes minutes on a CPU; the warm-up reads the option, not the model.
        return load_pipeline(replace(current, compile=False))

    calls: list[int] = []

    def counting_runner(pipeline: Any, current: PipelineOptions) -> Runner:
        inner = DiffusionRunner(pipeline, current)

        def run(jobs: Sequence[ImageJob]) -> list[EncodedImage]:
            calls.append(len(jobs))
            return inner(jobs)

        return run

    images = DiffusionImages(
        wiring.pipeline_options(settings),
        wiring.build_files_images(settings),
        prompt_template=settings.prompt_template,
        batching=BatchOptions(max_batch=settings.max_batch),
        loader=uncompiled,
        runner_factory=counting_runner,
    )
    stream = io.StringIO()
    configure_logging(stream=stream, background=False)

    async def warm() -> None:
        try:
            await images.warmup()
        finally:
            await images.aclose()

    asyncio.run(warm())
    flush_logs()
    logged = [json.loads(line)["extra"] for line in stream.getvalue().splitlines() if '"sdxl.warmup"' in line]
    assert [entry["batch_sizes"] for entry in logged] == [sizes]
    assert calls == sizes
