"""The `sdxl` image backend: any diffusers text-to-image pipeline (SDXL Turbo, SD Turbo, SD3, Flux, ...).

What differs between those families (sizes, dtype, call arguments) is in core/images/families.py.

torch and diffusers are imported here, inside functions, and this module itself is imported only when
the backend is chosen: the files backend and a Lambda cold start never pay for them.

- Loading and one warm-up generation run in the background at start-up; until they are done requests
  are answered 503 (retry) and `/health` says `warming`. A load failure leaves the files backend serving,
  `/health` `degraded`, with one clear log line.
- Concurrent requests are gathered into one pipeline call (`MicroBatcher`), whatever format and size each
  asked for; the call and each image's encoding (its format, resized to its size) run on the batcher's worker
  thread, so the event loop keeps answering.
- Each image has its own `torch.Generator` seeded from the creature's seed: an image depends on
  (seed, prompt, settings) only, never on the batch it rode in.
- A failed call (CUDA out of memory, say) gives that batch files images (`sdxl.fallback`), frees what
  memory it can, and the next batch uses the pipeline again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.creature import EncodedImage, ImageFormat, Rarity
from core.errors import ServiceUnavailable
from core.eventlog import log
from core.health import ComponentHealth, HealthStatus
from core.images.base import ImageRequest
from core.images.batching import MicroBatcher
from core.images.encoding import encode_image
from core.images.families import (
    Family,
    UnsupportedSize,
    call_arguments,
    choose_dtype,
    family_of,
    model_reader,
    model_shape,
)
from core.images.files import FilesImages
from core.metrics import Metrics, NullMetrics

WARMUP_PROMPT = "a small round friendly creature, simple background"

RARITY_LOOKS: dict[Rarity, str] = {
    Rarity.F: "a humble everyday critter, simple shapes, muted colours",
    Rarity.E: "a common little critter, simple shapes",
    Rarity.D: "an ordinary creature with a cheerful look",
    Rarity.C: "an uncommon creature with a distinctive pattern",
    Rarity.B: "a rare creature with bright colours and a special marking",
    Rarity.A: "a very rare creature with shimmering details",
    Rarity.S: "an epic creature with a faint glowing aura and elegant details",
    Rarity.S_PLUS: "a legendary majestic creature with a radiant aura and sparkling details",
}


@dataclass(frozen=True, slots=True)
class PipelineOptions:
    """How to load and call the pipeline (the `POKEMON_DIFFUSION_*` and `POKEMON_IMAGE_*` settings)."""

    model: str
    width: int = 512
    height: int = 512
    steps: int = 1
    guidance_scale: float = 0.0
    device: str = "auto"  # auto | cuda | cpu
    dtype: str = "auto"  # auto (the family's on CUDA, float32 elsewhere) | float16 | bfloat16 | float32
    attention_slicing: str = "auto"  # auto | 1 | 0
    vae: str | None = None
    vae_upcast: bool = False
    compile: bool = False


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """How requests are gathered into pipeline calls (`POKEMON_MAX_BATCH`, `_BATCH_WAIT_MS`, `_QUEUE_SIZE`)."""

    max_batch: int = 8
    max_wait: float = 0.01  # seconds
    queue_size: int = 64


def build_prompt(template: str, name: str, rarity: Rarity) -> str:
    return template.format(name=name, rarity=rarity.value, rarity_look=RARITY_LOOKS[rarity])


def _local_folder(model: str) -> bool:
    return Path(model).expanduser().is_dir()


def _dtype_argument(diffusers_version: str) -> str:
    # diffusers 0.42 renamed `torch_dtype` to `dtype` and deprecates the old name.
    major, minor = (int(part) for part in diffusers_version.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def _pipeline_family(diffusers: Any, options: PipelineOptions, local_only: bool) -> tuple[str | None, Family]:
    """The class `model_index.json` names, and its family: read first (a download of that file alone for a hub
    id), so the dtype is the family's and a size it cannot draw fails here, not in every call."""
    index = diffusers.DiffusionPipeline.load_config(options.model, local_files_only=local_only)
    name = index.get("_class_name") if isinstance(index, dict) else None
    # The component configs are in the folder or, for a hub id, in the cache once they are downloaded; when they
    # are not there yet the family's usual factors stand in (the start-up check did the same).
    files = model_reader(options.model)
    shape = model_shape(lambda relative: index if relative == "model_index.json" else files(relative))
    assert shape is not None  # the reader above always has the index
    for side in (options.width, options.height):
        problem = shape.size_problem(side)
        if problem is not None:
            raise UnsupportedSize(f"{options.width}x{options.height}: {problem}")
    return (name if isinstance(name, str) else None), shape.family


def load_pipeline(options: PipelineOptions) -> Any:
    """`AutoPipelineForText2Image.from_pretrained(options.model)` set up for this device and model family."""
    began = time.perf_counter()
    import diffusers
    import torch

    # Their own loggers write unstructured lines to stderr (CLIP truncation notes on every long prompt,
    # progress bars): errors only, our events say the rest.
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    with contextlib.suppress(ImportError):
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = device == "cuda"
    local_only = _local_folder(options.model) or os.environ.get("HF_HUB_OFFLINE") == "1"
    class_name, family = _pipeline_family(diffusers, options, local_only)
    dtype_name = choose_dtype(options.dtype, family, device, bf16_supported=cuda and torch.cuda.is_bf16_supported())
    dtype = getattr(torch, dtype_name)
    log.info("sdxl.load.start", model=options.model, family=family.name, device=device, dtype=dtype_name)
    arguments: dict[str, Any] = {_dtype_argument(diffusers.__version__): dtype}
    if local_only:
        arguments["local_files_only"] = True
    if options.vae:
        arguments["vae"] = diffusers.AutoencoderKL.from_pretrained(options.vae, **arguments)
    pipeline_type = getattr(diffusers, class_name or "", None)
    if pipeline_type is not None and "add_watermarker" in inspect.signature(pipeline_type.__init__).parameters:
        arguments["add_watermarker"] = False  # SDXL's invisible watermark: slow, and not wanted here
    pipeline_class = diffusers.AutoPipelineForText2Image
    if cuda and dtype == torch.float16:
        try:
            pipeline = pipeline_class.from_pretrained(options.model, variant="fp16", **arguments)
        except (OSError, ValueError):  # the repository or folder has no fp16 variant: take the full weights
            pipeline = pipeline_class.from_pretrained(options.model, **arguments)
    else:
        pipeline = pipeline_class.from_pretrained(options.model, **arguments)
    pipeline = pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    if options.vae_upcast and hasattr(pipeline, "vae"):
        pipeline.vae.config.force_upcast = True  # decode in fp32: the stock SDXL VAE overflows in fp16
    if cuda:
        torch.backends.cudnn.benchmark = True
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        if denoiser is not None:
            denoiser.to(memory_format=torch.channels_last)
    if _wants_attention_slicing(options.attention_slicing, device) and hasattr(pipeline, "enable_attention_slicing"):
        pipeline.enable_attention_slicing()
    if options.compile:
        if hasattr(pipeline, "unet"):
            pipeline.unet = torch.compile(pipeline.unet, mode="max-autotune", fullgraph=True)
        elif hasattr(pipeline, "transformer"):
            pipeline.transformer = torch.compile(pipeline.transformer, mode="max-autotune", fullgraph=True)
    log.info(
        "sdxl.load.done",
        pipeline=type(pipeline).__name__,
        device=device,
        duration_ms=round((time.perf_counter() - began) * 1000, 1),
    )
    return pipeline


SLICING_MEMORY_LIMIT = 12 * 2**30  # below this much GPU memory, "auto" slices attention


def _wants_attention_slicing(setting: str, device: str) -> bool:
    """Slicing saves memory on small GPUs (the description turns it on) but replaces the fused attention
    kernels, which large GPUs run several times faster: "auto" slices only where memory is tight."""
    if setting != "auto":
        return setting == "1"
    if device != "cuda":
        return False
    import torch

    return int(torch.cuda.get_device_properties(0).total_memory) < SLICING_MEMORY_LIMIT


def fixed_call_arguments(pipeline: Any, options: PipelineOptions) -> dict[str, Any]:
    """The arguments every call passes besides the prompts and generators: those the pipeline's `__call__` takes
    (all of them behind a `**kwargs`, as a wrapper has), per its family's rules."""
    parameters = inspect.signature(type(pipeline).__call__).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    missing = set() if takes_any else {"prompt", "generator"} - parameters.keys()
    if missing:
        raise TypeError(
            f"{type(pipeline).__name__} takes no {', '.join(sorted(missing))}: not a text-to-image pipeline"
        )
    transformer_config = getattr(getattr(pipeline, "transformer", None), "config", None)
    return call_arguments(
        None if takes_any else parameters.keys(),
        family_of(type(pipeline).__name__),
        steps=options.steps,
        guidance_scale=options.guidance_scale,
        width=options.width,
        height=options.height,
        embeds_guidance=bool(getattr(transformer_config, "guidance_embeds", False)),
    )


@dataclass(frozen=True, slots=True)
class ImageJob:
    seed: int
    prompt: str
    # How the image is encoded: only the encoding depends on them, so jobs of any formats share one batch.
    format: ImageFormat = ImageFormat.PNG
    size: int | None = None


def _encode(image: Any, job: ImageJob) -> EncodedImage:
    # PNG at level 1: a few times faster than the default, files barely larger (every image here is new).
    return encode_image(image, job.format, job.size, backend="sdxl", png_compress_level=1)


class DiffusionRunner:
    """Runs batches on the pipeline; called only from the batcher's single worker thread."""

    def __init__(self, pipeline: Any, options: PipelineOptions) -> None:
        self._pipeline = pipeline
        self._arguments = fixed_call_arguments(pipeline, options)
        self._device = pipeline.device

    def __call__(self, jobs: Sequence[ImageJob]) -> list[EncodedImage]:
        import torch

        generator_device = "cpu" if self._device.type == "mps" else self._device
        generators = [torch.Generator(device=generator_device).manual_seed(job.seed) for job in jobs]
        with torch.inference_mode():
            output = self._pipeline(prompt=[job.prompt for job in jobs], generator=generators, **self._arguments)
        return [_encode(image, job) for image, job in zip(output.images, jobs, strict=True)]


def release_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class DiffusionImages:
    backend = "sdxl"

    def __init__(
        self,
        options: PipelineOptions,
        fallback: FilesImages,
        *,
        prompt_template: str,
        batching: BatchOptions | None = None,
        metrics: Metrics | None = None,
        loader: Callable[[PipelineOptions], Any] = load_pipeline,
        runner_factory: Callable[
            [Any, PipelineOptions], Callable[[Sequence[ImageJob]], list[EncodedImage]]
        ] = DiffusionRunner,
    ) -> None:
        self._options = options
        self._prompt_template = prompt_template
        self._batching = batching or BatchOptions()
        self._metrics = metrics or NullMetrics()
        self._fallback = fallback
        self._loader = loader
        self._runner_factory = runner_factory
        self._runner: Callable[[Sequence[ImageJob]], list[EncodedImage]] | None = None
        self._batcher: MicroBatcher[ImageJob, EncodedImage | None] | None = None
        self._warmup: asyncio.Task[None] | None = None
        self._failed_load: str | None = None

    @property
    def ready(self) -> bool:
        return self._batcher is not None

    @property
    def batcher(self) -> MicroBatcher[ImageJob, EncodedImage | None] | None:
        return self._batcher

    async def start(self) -> None:
        """Begin loading in the background; `warmup()` waits for it."""
        if self._warmup is None:
            self._warmup = asyncio.create_task(self._load_and_warm(), name="sdxl-warmup")

    async def warmup(self) -> None:
        await self.start()
        assert self._warmup is not None
        await asyncio.shield(self._warmup)

    async def _load_and_warm(self) -> None:
        try:
            pipeline = await asyncio.to_thread(self._loader, self._options)
            runner = self._runner_factory(pipeline, self._options)
            began = time.perf_counter()
            # A compiled model specialises on batch size: warm the largest batch too, so compilation
            # happens here rather than in a caller's request.
            max_batch = self._batching.max_batch
            sizes = [1, max_batch] if self._options.compile and max_batch > 1 else [1]
            for size in sizes:
                await asyncio.to_thread(runner, [ImageJob(seed=index, prompt=WARMUP_PROMPT) for index in range(size)])
            log.info("sdxl.warmup", duration_ms=round((time.perf_counter() - began) * 1000, 1), batch_sizes=sizes)
        except Exception as exc:
            self._failed_load = type(exc).__name__
            # Only our own message is logged: a library's may carry paths or tokens.
            reason = {"reason": str(exc)} if isinstance(exc, UnsupportedSize) else {}
            log.error(
                "sdxl.load.failed", model=self._options.model, error=type(exc).__name__, fallback="files", **reason
            )
            return
        self._runner = runner
        batcher: MicroBatcher[ImageJob, EncodedImage | None] = MicroBatcher(
            self._run_batch,
            max_batch=self._batching.max_batch,
            max_wait=self._batching.max_wait,
            queue_size=self._batching.queue_size,
            name="sdxl",
        )
        batcher.on_batch = self._batch_done
        self._batcher = batcher

    def _batch_done(self, size: int, seconds: float) -> None:
        log.info("sdxl.generate", batch_size=size, duration_ms=round(seconds * 1000, 1))
        self._metrics.batch(size)

    def queue_depth(self) -> int:
        return self._batcher.depth if self._batcher is not None else 0

    def _run_batch(self, jobs: Sequence[ImageJob]) -> list[EncodedImage | None]:
        assert self._runner is not None
        try:
            return list(self._runner(jobs))
        except Exception as exc:
            # One bad call must not take the backend down: this batch gets files images, the next one
            # tries the pipeline again.
            log.error("sdxl.fallback", batch_size=len(jobs), error=type(exc).__name__)
            release_memory()
            return [None] * len(jobs)

    async def render(self, request: ImageRequest) -> EncodedImage:
        if self._batcher is None:
            if self._failed_load is not None:
                return await self._fallback.render(request)
            raise ServiceUnavailable("the image model is warming up; retry shortly", retry_after=5)
        prompt = build_prompt(self._prompt_template, request.name, request.rarity)
        job = ImageJob(seed=request.seed, prompt=prompt, format=request.format, size=request.size)
        image = await self._batcher.submit(job)
        return image if image is not None else await self._fallback.render(request)

    def health(self) -> ComponentHealth:
        if self._failed_load is not None:
            return ComponentHealth(
                self.backend, HealthStatus.DEGRADED, f"model failed to load ({self._failed_load}): files serve"
            )
        if self._batcher is None:
            return ComponentHealth(self.backend, HealthStatus.WARMING, "loading the model")
        return ComponentHealth(self.backend, HealthStatus.OK, f"queue depth {self._batcher.depth}")

    async def aclose(self) -> None:
        if self._warmup is not None and not self._warmup.done():
            self._warmup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._warmup
        if self._batcher is not None:
            await self._batcher.aclose()
        self._runner = None
        release_memory()
