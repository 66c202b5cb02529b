"""What differs between diffusers model families: the sizes they can draw, their dtype on a GPU, their call.

A model's family comes from the pipeline class its `model_index.json` names (`_class_name`), which can be read
before any weight loads: the start-up check (core/wiring.py) refuses a size the model cannot draw, and the loader
(core/images/diffusion.py) picks the dtype and the call's arguments. A class not listed here gets SDXL's rules
(multiples of 8, float16 on CUDA), those of the UNet pipelines that most community checkpoints are.

Sizes: the VAE divides each side by 2**(its blocks - 1) (8 for every released model), and a transformer reads
the latent in patches (SD3: `patch_size` 2) or packs it 2×2 (Flux): a side must be a multiple of their product.
Off that grid SD3 raises on every call (the warm-up fails, files serve) and Flux silently draws a smaller image.

Only json and pathlib here: the start-up check must not import torch or diffusers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

CudaDtype = Literal["float16", "bfloat16"]
JsonReader = Callable[[str], dict[str, Any] | None]  # a file of the model, by its path inside it


class UnsupportedSize(ValueError):
    """The configured width or height is off the model's grid; the message says which sizes it can draw."""


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    # The denoiser's patch side in latent pixels (1 for a UNet): sizes step by the VAE's factor times this.
    latent_patch: int
    # The dtype on CUDA when POKEMON_DIFFUSION_DTYPE is auto. fp16 for the UNet families (their releases ship fp16
    # weights); bf16 for the transformer families, released in bf16, whose T5 encoder is prone to overflow in fp16.
    cuda_dtype: CudaDtype
    # T5 prompt tokens for the families that have a T5 encoder; None leaves the pipeline's default. Flux's
    # default is 512, more than Flux.1-schnell was trained with (256), and padding that only lengthens the
    # joint attention for prompts that, like this service's, stay well under 100 tokens.
    max_sequence_length: int | None = None


SDXL = Family("sdxl", latent_patch=1, cuda_dtype="float16")
SD = Family("sd", latent_patch=1, cuda_dtype="float16")
SD3 = Family("sd3", latent_patch=2, cuda_dtype="bfloat16")
FLUX = Family("flux", latent_patch=2, cuda_dtype="bfloat16", max_sequence_length=256)
OTHER = Family("other", latent_patch=1, cuda_dtype="float16")

# Longest prefix first: "StableDiffusionXLPipeline" must not be taken for SD, nor "StableDiffusion3Pipeline".
_CLASS_PREFIXES: tuple[tuple[str, Family], ...] = (
    ("StableDiffusion3", SD3),
    ("StableDiffusionXL", SDXL),
    ("StableDiffusion", SD),
    ("Flux", FLUX),
)

DEFAULT_VAE_FACTOR = 8


def family_of(pipeline_class: str | None) -> Family:
    for prefix, family in _CLASS_PREFIXES:
        if pipeline_class and pipeline_class.startswith(prefix):
            return family
    return OTHER


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What a model's configuration files say about it, read before its weights."""

    pipeline_class: str | None
    family: Family
    size_multiple: int

    def size_problem(self, side: int) -> str | None:
        """Why `side` (a width or height) cannot be drawn, in one line; None when it can."""
        step = self.size_multiple
        if side % step == 0:
            return None
        lower = max(step, side - side % step)
        return (
            f"{self.pipeline_class or 'this model'} ({self.family.name}) draws sides in multiples of {step}, "
            f"e.g. {lower} or {lower + step}"
        )


def model_shape(read: JsonReader) -> ModelShape | None:
    """The model's shape from its `model_index.json` and component configs; None when that file cannot be read
    (a single-file checkpoint, a hub id not in the local cache): the loader then finds out for itself."""
    index = read("model_index.json")
    if index is None:
        return None
    name = index.get("_class_name")
    pipeline_class = name if isinstance(name, str) else None
    family = family_of(pipeline_class)
    vae = read("vae/config.json") or {}
    blocks = vae.get("block_out_channels")
    vae_factor = 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else DEFAULT_VAE_FACTOR
    patch = family.latent_patch
    if family is SD3:
        configured = (read("transformer/config.json") or {}).get("patch_size")
        patch = configured if isinstance(configured, int) and configured > 0 else patch
    return ModelShape(pipeline_class, family, vae_factor * patch)


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # unreadable: the load reports it properly (and falls back), the start-up check just skips
    return value if isinstance(value, dict) else None


def folder_reader(folder: Path) -> JsonReader:
    return lambda relative: _json_object(folder / relative)


def hub_cache_reader(repo_id: str) -> JsonReader:
    """Reads a hub model's files from the local Hugging Face cache only: never a download at start-up."""

    def read(relative: str) -> dict[str, Any] | None:
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(repo_id, relative)
        except ValueError:  # not a valid repo id: the load will say so
            return None
        return _json_object(Path(cached)) if isinstance(cached, str) else None

    return read


def model_reader(model: str) -> JsonReader:
    """A folder's files when `model` is one, else the hub cache's copy of that repository."""
    folder = Path(model).expanduser()
    return folder_reader(folder) if folder.is_dir() else hub_cache_reader(model)


def choose_dtype(setting: str, family: Family, device: str, *, bf16_supported: bool) -> str:
    """The torch dtype name to load in. `auto`: the family's on CUDA, float32 elsewhere (fp16 on a CPU is an order
    of magnitude slower); bf16 on a GPU without it (before Ampere) becomes fp16. An explicit choice is kept."""
    if setting != "auto":
        return setting
    if device != "cuda":
        return "float32"
    if family.cuda_dtype == "bfloat16" and not bf16_supported:
        return "float16"
    return family.cuda_dtype


def call_arguments(
    accepted: Collection[str] | None,
    family: Family,
    *,
    steps: int,
    guidance_scale: float,
    width: int,
    height: int,
    embeds_guidance: bool,
) -> dict[str, Any]:
    """The fixed arguments of every pipeline call, limited to the names the pipeline's `__call__` takes (`accepted`;
    None when it takes any).

    Flux's `guidance_scale` is not classifier-free guidance but a number fed to guidance-distilled models
    (Flux.1-dev, `guidance_embeds`); the others (Flux.1-schnell) ignore it, so it is left out for them.
    """
    wanted: dict[str, Any] = {"num_inference_steps": steps, "width": width, "height": height}
    if family is not FLUX or embeds_guidance:
        wanted["guidance_scale"] = guidance_scale
    if family.max_sequence_length is not None:
        wanted["max_sequence_length"] = family.max_sequence_length
    return {name: value for name, value in wanted.items() if accepted is None or name in accepted}
