"""Tiny random SD3 and Flux pipelines served from a folder by the real server process, as SDXL is in
tests/test_diffusion.py: warm and `ok` (never a quiet fall back to files), images of exactly the configured size,
`?seed=` reproducible, concurrent requests still gathered into shared pipeline calls. Then, in process, what the
loader makes of each family: the call's arguments, and a size off the grid refused at load time.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from core.images.diffusion import (
    DiffusionImages,
    DiffusionRunner,
    ImageJob,
    PipelineOptions,
    fixed_call_arguments,
    load_pipeline,
)
from core.images.families import UnsupportedSize
from core.images.files import FilesImages
from tests.support.paths import SHIPPED_IMAGES
from tests.support.server import ServerProcess, start_server
from tests.support.tiny_flux import build_tiny_flux

# Not square, so a swapped width and height shows; multiples of 16, as both families need.
WIDTH, HEIGHT = 64, 80
PIPELINES = {"sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def events(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log_lines() if f'"{name}"' in line]


def pixels(encoded: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def family_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server on the family's tiny pipeline, warmed up; named by the new settings (the old ones: test_families)."""
    family: str = request.param
    model: Path = request.getfixturevalue(f"tiny_{family}_dir")
    env = {
        "POKEMON_GENERATION_BACKEND": "diffusion",
        "POKEMON_DIFFUSION_MODEL": str(model),
        "POKEMON_IMAGE_WIDTH": str(WIDTH),
        "POKEMON_IMAGE_HEIGHT": str(HEIGHT),
        "POKEMON_DIFFUSION_DEVICE": "cpu",
        "POKEMON_RATE_LIMIT_PER_MIN": "0",
        "POKEMON_BATCH_WAIT_MS": "50",
    }
    server = start_server(tmp_path_factory.mktemp(f"serve-{family}"), env)
    try:
        with server.client() as client:
            wait_for(lambda: client.get("/health").json()["status"] != "warming")
        yield server
    finally:
        server.stop()
    # Whatever the tests did, the pipeline served every call: no batch went to files, nothing failed to load.
    assert events(server, "sdxl.fallback") == []
    assert events(server, "sdxl.load.failed") == []


def family_of(server: ServerProcess) -> str:
    [start] = events(server, "sdxl.load.start")
    return str(start["extra"]["family"])


def test_the_family_loads_and_serves_images_of_the_configured_size(family_server: ServerProcess) -> None:
    with family_server.client() as client:
        health = client.get("/health").json()
        body = client.get("/v1/generate", params={"seed": 5}).json()
    assert health["status"] == "ok", health
    assert health["components"]["images"]["status"] == "ok"
    assert body["metadata"]["imageSource"] == "sdxl"
    image = pixels(body["imageBase64"])
    assert image.format == "PNG" and image.size == (WIDTH, HEIGHT)
    family = family_of(family_server)
    [done] = events(family_server, "sdxl.load.done")
    assert done["extra"]["pipeline"] == PIPELINES[family]
    [start] = events(family_server, "sdxl.load.start")
    assert start["extra"]["dtype"] == "float32"  # a CPU: float32 whatever the family prefers on a GPU


def test_a_seed_gives_the_same_image_again(family_server: ServerProcess) -> None:
    with family_server.client() as client:
        first, again, other = (
            client.get("/v1/generate", params={"seed": seed}).json()["imageBase64"] for seed in (42, 42, 43)
        )
    assert first == again
    assert pixels(first).tobytes() != pixels(other).tobytes()


def test_concurrent_requests_share_pipeline_calls(family_server: ServerProcess) -> None:
    seeds = list(range(200, 206))
    with family_server.client() as client:
        alone = {seed: client.get("/v1/generate", params={"seed": seed}).json()["imageBase64"] for seed in seeds}

    def fetch(seed: int) -> tuple[int, httpx.Response]:
        with family_server.client() as own:
            return seed, own.get("/v1/generate", params={"seed": seed})

    with ThreadPoolExecutor(len(seeds)) as pool:
        together = dict(pool.map(fetch, seeds))
    assert {response.status_code for response in together.values()} == {200}
    for seed in seeds:
        # The batch an image rides in does not change it, beyond summation order in the last bit.
        shared, own = pixels(together[seed].json()["imageBase64"]), pixels(alone[seed])
        assert max(abs(a - b) for a, b in zip(shared.tobytes(), own.tobytes(), strict=True)) <= 2

    def largest_batch() -> int:
        return max(int(entry["extra"]["batch_size"]) for entry in events(family_server, "sdxl.generate"))

    wait_for(lambda: largest_batch() > 1, timeout=5.0)


# --- The loader, in process ---


def options(model: Path, **overrides: Any) -> PipelineOptions:
    return PipelineOptions(model=str(model), **{"width": WIDTH, "height": HEIGHT, "device": "cpu", **overrides})


@pytest.mark.parametrize("family", sorted(PIPELINES))
def test_a_size_off_the_grid_is_refused_at_load_too(request: pytest.FixtureRequest, family: str) -> None:
    # A hub id not in the local cache skips the start-up check: the loader applies the same rule.
    model: Path = request.getfixturevalue(f"tiny_{family}_dir")
    with pytest.raises(UnsupportedSize, match="multiples of 16"):
        load_pipeline(options(model, width=72))


def test_a_refused_size_at_load_leaves_files_serving(tiny_flux_dir: Path) -> None:
    images = DiffusionImages(
        options(tiny_flux_dir, height=72),
        FilesImages.from_folder(SHIPPED_IMAGES, [f"image_{index:02d}.png" for index in range(6)]),
        prompt_template="{name}",
    )

    async def warm() -> str:
        await images.warmup()
        detail = str(images.health().detail)
        await images.aclose()
        return detail

    assert "UnsupportedSize" in asyncio.run(warm())


def test_schnell_shaped_flux_gets_no_guidance(tiny_flux_dir: Path) -> None:
    chosen = options(tiny_flux_dir, guidance_scale=3.5)
    assert fixed_call_arguments(load_pipeline(chosen), chosen) == {
        "num_inference_steps": 1,
        "width": WIDTH,
        "height": HEIGHT,
        "max_sequence_length": 256,
    }


def test_guidance_distilled_flux_gets_the_guidance_scale(tmp_path: Path) -> None:
    model = build_tiny_flux(tmp_path / "flux-dev", guidance_embeds=True)
    chosen = options(model, guidance_scale=3.5)
    pipeline = load_pipeline(chosen)
    assert fixed_call_arguments(pipeline, chosen)["guidance_scale"] == 3.5
    [image] = DiffusionRunner(pipeline, chosen)([ImageJob(seed=1, prompt="a small creature")])
    assert (image.width, image.height) == (WIDTH, HEIGHT)


def test_sd3_gets_the_guidance_scale(tiny_sd3_dir: Path) -> None:
    chosen = options(tiny_sd3_dir, guidance_scale=2.0)
    assert fixed_call_arguments(load_pipeline(chosen), chosen) == {
        "num_inference_steps": 1,
        "width": WIDTH,
        "height": HEIGHT,
        "guidance_scale": 2.0,
    }


def test_the_dtype_setting_reaches_the_loader(tiny_flux_dir: Path) -> None:
    import torch

    from core import wiring
    from core.config import load_settings

    settings = load_settings(
        generation_backend="diffusion", sdxl_model=str(tiny_flux_dir), sdxl_device="cpu", sdxl_dtype="bf16"
    )
    pipeline = load_pipeline(wiring.pipeline_options(settings))
    assert pipeline.transformer.dtype == pipeline.text_encoder_2.dtype == torch.bfloat16
