"""Model families: the rules each follows (core/images/families.py), the family-neutral setting names with the old
`SDXL_*` ones still read (core/config.py), and the start-up refusal of a size the model cannot draw, through the real
server process. The tiny SD3 and Flux pipelines served end to end: tests/test_diffusion_families.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from core import wiring
from core.config import LEGACY_NAMES, load_settings
from core.errors import ConfigError
from core.images.families import (
    FLUX,
    OTHER,
    SD,
    SD3,
    SDXL,
    Family,
    call_arguments,
    choose_dtype,
    family_of,
    folder_reader,
    model_reader,
    model_shape,
)
from tests.support.server import assert_refused_setting, run_server_once

# --- Families ---


@pytest.mark.parametrize(
    ("pipeline_class", "family"),
    [
        ("StableDiffusionXLPipeline", SDXL),
        ("StableDiffusionPipeline", SD),
        ("StableDiffusion3Pipeline", SD3),
        ("FluxPipeline", FLUX),
        ("KandinskyV22Pipeline", OTHER),
        (None, OTHER),
    ],
)
def test_the_family_comes_from_the_pipeline_class(pipeline_class: str | None, family: Family) -> None:
    assert family_of(pipeline_class) is family


def test_an_unknown_family_follows_sdxls_rules() -> None:
    assert (OTHER.latent_patch, OTHER.cuda_dtype) == (SDXL.latent_patch, SDXL.cuda_dtype)


@pytest.mark.parametrize(
    ("setting", "family", "device", "bf16", "chosen"),
    [
        ("auto", SDXL, "cuda", True, "float16"),
        ("auto", SD, "cuda", True, "float16"),
        ("auto", SD3, "cuda", True, "bfloat16"),
        ("auto", FLUX, "cuda", True, "bfloat16"),
        ("auto", OTHER, "cuda", True, "float16"),
        # A GPU without bf16 (before Ampere) gets fp16 rather than an emulated bf16.
        ("auto", FLUX, "cuda", False, "float16"),
        ("auto", SD3, "cuda", False, "float16"),
        # fp16 on a CPU is an order of magnitude slower: float32 whatever the family.
        ("auto", SDXL, "cpu", False, "float32"),
        ("auto", FLUX, "cpu", True, "float32"),
        # An explicit choice is kept.
        ("float32", FLUX, "cuda", True, "float32"),
        ("bfloat16", SDXL, "cuda", True, "bfloat16"),
        ("float16", SD3, "cpu", False, "float16"),
    ],
)
def test_dtype_per_family_and_device(setting: str, family: Family, device: str, bf16: bool, chosen: str) -> None:
    assert choose_dtype(setting, family, device, bf16_supported=bf16) == chosen


def test_the_tiny_models_have_the_real_size_rules(tiny_sdxl_dir: Path, tiny_sd3_dir: Path, tiny_flux_dir: Path) -> None:
    found = {}
    for folder in (tiny_sdxl_dir, tiny_sd3_dir, tiny_flux_dir):
        shape = model_shape(folder_reader(folder))
        assert shape is not None
        found[shape.pipeline_class] = (shape.family, shape.size_multiple)
    assert found == {
        "StableDiffusionXLPipeline": (SDXL, 8),
        "StableDiffusion3Pipeline": (SD3, 16),
        "FluxPipeline": (FLUX, 16),
    }


def write_model(folder: Path, files: dict[str, Any]) -> Path:
    for relative, content in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return folder


def test_the_size_step_comes_from_the_vae_and_the_patch(tmp_path: Path) -> None:
    # A 4× VAE (three blocks) and 4×4 patches: a 16 px grid, which the family alone (8 × 2) would not give.
    folder = write_model(
        tmp_path,
        {
            "model_index.json": {"_class_name": "StableDiffusion3Pipeline"},
            "vae/config.json": {"block_out_channels": [8, 16, 32]},
            "transformer/config.json": {"patch_size": 4},
        },
    )
    shape = model_shape(folder_reader(folder))
    assert shape is not None and shape.size_multiple == 16
    assert shape.size_problem(80) is None
    assert shape.size_problem(72) == "StableDiffusion3Pipeline (sd3) draws sides in multiples of 16, e.g. 64 or 80"


@pytest.mark.parametrize(
    "files",
    [
        {},  # no model_index.json: a single-file checkpoint, say
        {"model_index.json": "{not json"},
        {"model_index.json": "[1, 2]"},
    ],
)
def test_no_readable_index_means_no_start_up_check(tmp_path: Path, files: dict[str, Any]) -> None:
    # The loader then finds out for itself (and falls back with a log line): start-up must not guess.
    assert model_shape(folder_reader(write_model(tmp_path, files))) is None


def test_a_hub_id_is_read_from_the_local_cache_only() -> None:
    # Not in the cache (and no hub reachable): nothing to check, nothing downloaded.
    assert model_shape(model_reader("nobody/not-cached-anywhere")) is None


def test_guidance_and_sequence_length_per_family() -> None:
    common: dict[str, Any] = {"steps": 4, "guidance_scale": 3.5, "width": 512, "height": 768}
    sizes = {"num_inference_steps": 4, "width": 512, "height": 768}
    assert call_arguments(None, SDXL, embeds_guidance=False, **common) == {**sizes, "guidance_scale": 3.5}
    assert call_arguments(None, SD3, embeds_guidance=False, **common) == {**sizes, "guidance_scale": 3.5}
    # Flux.1-schnell has no guidance input: the number would be ignored, so it is not passed.
    assert call_arguments(None, FLUX, embeds_guidance=False, **common) == {**sizes, "max_sequence_length": 256}
    # Flux.1-dev embeds it.
    assert call_arguments(None, FLUX, embeds_guidance=True, **common) == {
        **sizes,
        "guidance_scale": 3.5,
        "max_sequence_length": 256,
    }


def test_only_the_names_a_pipeline_takes_are_passed() -> None:
    accepted = {"prompt", "generator", "num_inference_steps", "width", "height"}
    chosen = call_arguments(accepted, FLUX, steps=1, guidance_scale=0.0, width=64, height=64, embeds_guidance=True)
    assert chosen == {"num_inference_steps": 1, "width": 64, "height": 64}


# --- Setting names ---


@pytest.mark.parametrize(
    ("new", "old", "value", "field", "parsed"),
    [
        ("POKEMON_DIFFUSION_MODEL", "SDXL_TURBO_MODEL", "/models/flux", "sdxl_model", "/models/flux"),
        ("POKEMON_IMAGE_WIDTH", "SDXL_WIDTH", "768", "sdxl_width", 768),
        ("POKEMON_IMAGE_HEIGHT", "SDXL_HEIGHT", "640", "sdxl_height", 640),
        ("POKEMON_DIFFUSION_STEPS", "SDXL_STEPS", "4", "sdxl_steps", 4),
        ("POKEMON_DIFFUSION_GUIDANCE_SCALE", "SDXL_GUIDANCE_SCALE", "3.5", "sdxl_guidance_scale", 3.5),
        ("POKEMON_DIFFUSION_DEVICE", "SDXL_DEVICE", "cpu", "sdxl_device", "cpu"),
        ("POKEMON_DIFFUSION_ATTENTION_SLICING", "SDXL_ATTENTION_SLICING", "on", "sdxl_attention_slicing", "1"),
        ("POKEMON_DIFFUSION_VAE", "SDXL_VAE", "/models/vae", "sdxl_vae", "/models/vae"),
        ("POKEMON_DIFFUSION_VAE_UPCAST", "SDXL_VAE_UPCAST", "1", "sdxl_vae_upcast", True),
        ("POKEMON_DIFFUSION_COMPILE", "SDXL_COMPILE", "true", "sdxl_compile", True),
    ],
)
def test_new_and_old_names_set_the_same_setting(
    monkeypatch: pytest.MonkeyPatch, new: str, old: str, value: str, field: str, parsed: object
) -> None:
    assert LEGACY_NAMES[new] == old
    monkeypatch.setenv(new, value)
    by_new = load_settings()
    monkeypatch.delenv(new)
    monkeypatch.setenv(old, value)
    by_old = load_settings()
    assert getattr(by_new, field) == getattr(by_old, field) == parsed
    assert (by_new.variable_for(field), by_old.variable_for(field)) == (new, old)
    monkeypatch.setenv(new, value)  # both, the same value: no conflict
    assert getattr(load_settings(), field) == parsed


def test_every_old_name_has_a_new_one() -> None:
    from core.config import Settings

    variables = {field.validation_alias for field in Settings.model_fields.values()}
    assert set(LEGACY_NAMES) <= variables
    assert not set(LEGACY_NAMES.values()) & variables


def test_both_names_with_different_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_IMAGE_WIDTH", "512")
    monkeypatch.setenv("SDXL_WIDTH", "640")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "POKEMON_IMAGE_WIDTH"
    assert "SDXL_WIDTH" in str(caught.value) and "'640'" in str(caught.value)


@pytest.mark.parametrize("variable", ["SDXL_WIDTH", "POKEMON_IMAGE_WIDTH"])
def test_a_bad_value_is_reported_under_the_name_that_was_set(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "500")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"invalid setting {variable}='500': a multiple of 8")


def test_an_old_name_given_in_code_still_works() -> None:
    assert load_settings(SDXL_STEPS=3).sdxl_steps == 3


def test_the_logged_settings_use_the_new_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXL_WIDTH", "640")
    view = load_settings().public_view()
    assert view["POKEMON_IMAGE_WIDTH"] == 640
    assert view["POKEMON_DIFFUSION_DTYPE"] == "auto"
    assert not any(key.startswith("SDXL_") for key in view)


@pytest.mark.parametrize(("text", "backend"), [("diffusion", "sdxl"), ("Diffusion", "sdxl"), ("sdxl", "sdxl")])
def test_diffusion_is_the_sdxl_backend(text: str, backend: str) -> None:
    assert load_settings(generation_backend=text).generation_backend == backend


@pytest.mark.parametrize(
    ("text", "dtype"), [("auto", "auto"), ("bf16", "bfloat16"), ("FP16", "float16"), ("float32", "float32")]
)
def test_dtype_setting(text: str, dtype: str) -> None:
    assert load_settings(sdxl_dtype=text).sdxl_dtype == dtype


def test_an_unknown_dtype_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POKEMON_DIFFUSION_DTYPE", "int8")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.variable == "POKEMON_DIFFUSION_DTYPE"


# --- Start-up check ---


def diffusion_env(model: Path | str, **extra: str) -> dict[str, str]:
    return {"POKEMON_GENERATION_BACKEND": "diffusion", "POKEMON_DIFFUSION_MODEL": str(model), **extra}


def test_flux_refuses_a_side_off_its_grid_at_start_up(tiny_flux_dir: Path) -> None:
    # Flux would otherwise draw 64 wide without a word.
    result = run_server_once(**diffusion_env(tiny_flux_dir, POKEMON_IMAGE_WIDTH="72", POKEMON_IMAGE_HEIGHT="64"))
    assert_refused_setting(result, "POKEMON_IMAGE_WIDTH", "=72:", "FluxPipeline", "multiples of 16", "64 or 80")


def test_sd3_refusal_names_the_old_variable_when_that_was_set(tiny_sd3_dir: Path) -> None:
    result = run_server_once(**diffusion_env(tiny_sd3_dir, SDXL_WIDTH="64", SDXL_HEIGHT="520"))
    assert_refused_setting(result, "SDXL_HEIGHT", "=520:", "StableDiffusion3Pipeline", "multiples of 16")


def test_conflicting_names_are_refused_at_start_up() -> None:
    result = run_server_once(POKEMON_DIFFUSION_STEPS="4", SDXL_STEPS="1")
    assert_refused_setting(result, "POKEMON_DIFFUSION_STEPS", "SDXL_STEPS")


def test_a_cached_hub_model_is_checked_at_start_up(tiny_flux_dir: Path, tmp_path: Path) -> None:
    # The Hugging Face cache layout: refs/main names a snapshot holding the repository's files.
    repo = tmp_path / "hub" / "models--tiny--flux"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_flux_dir / "model_index.json", snapshot / "model_index.json")
    (snapshot / "vae").mkdir()
    shutil.copy(tiny_flux_dir / "vae" / "config.json", snapshot / "vae" / "config.json")
    result = run_server_once(
        **diffusion_env("tiny/flux", POKEMON_IMAGE_WIDTH="64", POKEMON_IMAGE_HEIGHT="200"),
        HF_HUB_CACHE=str(tmp_path / "hub"),
    )
    assert_refused_setting(result, "POKEMON_IMAGE_HEIGHT", "=200:", "FluxPipeline", "192 or 208")


def test_sdxl_keeps_any_multiple_of_eight(tiny_sdxl_dir: Path) -> None:
    settings = load_settings(generation_backend="sdxl", sdxl_model=str(tiny_sdxl_dir), sdxl_width=72, sdxl_height=520)
    wiring.check_image_size(settings)  # no refusal


def test_the_check_costs_no_heavy_import(tiny_flux_dir: Path) -> None:
    import subprocess
    import sys

    from tests.support.environment import clean_environment
    from tests.support.paths import REPO, SHIPPED_IMAGES

    script = (
        "import sys\n"
        "from core import wiring\n"
        "from core.config import load_settings\n"
        "wiring.check_image_size(load_settings())\n"
        "print(sorted(name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=clean_environment(
            POKEMON_IMAGES_DIR=str(SHIPPED_IMAGES), **diffusion_env(tiny_flux_dir, POKEMON_IMAGE_WIDTH="64")
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
