"""Formats and sizes on the diffusion backend: a tiny random SDXL pipeline loaded through the real loader (CPU),
requests of different formats sharing one pipeline call, each image encoded on the batch worker thread."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from core import wiring
from core.config import load_settings
from core.creature import EncodedImage, ImageFormat, Rarity
from core.images.base import ImageRequest
from core.images.diffusion import BatchOptions, DiffusionImages, DiffusionRunner, ImageJob, PipelineOptions
from tests.support.paths import SHIPPED_IMAGES

SIZE = 64


class RecordingRunner:
    """The real runner, noting what each call was given and on which thread it ran."""

    calls: list[list[tuple[ImageFormat, int | None]]]
    threads: set[str]
    latest: RecordingRunner

    def __init__(self, pipeline: Any, options: PipelineOptions) -> None:
        self.inner = DiffusionRunner(pipeline, options)
        self.fail = False
        RecordingRunner.calls, RecordingRunner.threads, RecordingRunner.latest = [], set(), self

    def __call__(self, jobs: Sequence[ImageJob]) -> list[EncodedImage]:
        RecordingRunner.calls.append([(job.format, job.size) for job in jobs])
        RecordingRunner.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("CUDA out of memory")
        return self.inner(jobs)


def decoded(image: EncodedImage) -> Image.Image:
    picture = Image.open(io.BytesIO(image.raw()))
    picture.load()
    return picture


def test_formats_share_a_batch_and_are_encoded_on_the_worker_thread(tiny_sdxl_dir: Path) -> None:
    settings = load_settings(
        images_dir=SHIPPED_IMAGES,
        generation_backend="sdxl",
        sdxl_model=str(tiny_sdxl_dir),
        sdxl_width=SIZE,
        sdxl_height=SIZE,
    )
    images = DiffusionImages(
        wiring.pipeline_options(settings),
        wiring.build_files_images(settings),
        prompt_template=settings.prompt_template,
        batching=BatchOptions(max_batch=8, max_wait=0.5),
        runner_factory=RecordingRunner,
    )
    wanted = [(ImageFormat.WEBP, 48), (ImageFormat.JPEG, None), (ImageFormat.PNG, 32), (ImageFormat.PNG, None)]

    async def scenario() -> tuple[list[EncodedImage], str, list[EncodedImage], EncodedImage]:
        await images.warmup()
        loop_thread = threading.current_thread().name
        requests = [
            ImageRequest(seed=7, name="Voltaran", rarity=Rarity.B, format=image_format, size=size)
            for image_format, size in wanted
        ]
        together = await asyncio.gather(*(images.render(request) for request in requests))
        alone = [await images.render(requests[0]) for _ in range(2)]  # the same seed, format and size, alone
        RecordingRunner.latest.fail = True  # a failed call: the files fallback, in the format asked for
        fallback = await images.render(requests[0])
        await images.aclose()
        return together, loop_thread, alone, fallback

    together, loop_thread, alone, fallback = asyncio.run(scenario())
    assert sorted(RecordingRunner.calls[1], key=str) == sorted(wanted, key=str)  # one call for all four
    assert loop_thread not in RecordingRunner.threads
    for image, (image_format, size) in zip(together, wanted, strict=True):
        picture = decoded(image)
        assert image.backend == "sdxl" and image.format is image_format
        assert picture.format == image_format.name and picture.size == ((size, size) if size else (SIZE, SIZE))
        assert (image.width, image.height) == picture.size
    assert alone[0].raw() == alone[1].raw()  # the same pixels, the same bytes
    batched, single = decoded(together[0]).convert("RGB").tobytes(), decoded(alone[0]).convert("RGB").tobytes()
    assert max(abs(a - b) for a, b in zip(batched, single, strict=True)) <= 8  # whatever batch it rode in
    assert fallback.backend == "files" and fallback.format is ImageFormat.WEBP
    assert decoded(fallback).size == (48, 48)
