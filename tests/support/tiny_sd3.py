"""A tiny, randomly initialised Stable Diffusion 3 pipeline saved to disk, for tests that load the real thing offline.

`build_tiny_sd3` puts together a `diffusers.StableDiffusion3Pipeline` shaped like SD3 (two CLIP encoders with
projections, a T5 encoder, an MMDiT `SD3Transformer2DModel` reading the latent in 2×2 patches, a 16-channel 8× VAE,
a flow-matching scheduler) a few dozen channels wide, and saves it with `save_pretrained`: a folder of about 2 MB
whose `model_index.json` names `StableDiffusion3Pipeline`. Its sides must be multiples of 16 (8 × patch 2), as
SD3's are; its images are coloured noise. Built parts: tests/support/tiny_parts.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_parts import DEFAULT_SIDE, LATENT_CHANNELS, T5_HIDDEN, VAE_FACTOR

PATCH = 2


def build_tiny_sd3(folder: Path, *, seed: int = 0) -> Path:
    """Builds the tiny SD3 pipeline into `folder` and returns it; the same seed gives the same weights, and the global
    torch RNG is left as it was."""
    import torch
    from diffusers.models.transformers.transformer_sd3 import SD3Transformer2DModel
    from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    from tests.support.tiny_parts import build_scheduler, build_t5_encoder, build_t5_tokenizer, build_vae
    from tests.support.tiny_sdxl import TEXT_PROJECTION, build_clip_tokenizer, clip_text_config

    tokenizer, tokenizer_2, tokenizer_3 = build_clip_tokenizer(), build_clip_tokenizer(), build_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModelWithProjection(clip_text_config(tokenizer))
        text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(tokenizer_2))
        text_encoder_3 = build_t5_encoder(tokenizer_3)
        transformer = SD3Transformer2DModel(
            sample_size=DEFAULT_SIDE // VAE_FACTOR,
            patch_size=PATCH,
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            # The CLIP hidden states (concatenated, padded to T5's width) and T5's share one joint sequence.
            joint_attention_dim=T5_HIDDEN,
            caption_projection_dim=32,
            # The two CLIP encoders' pooled projections, concatenated.
            pooled_projection_dim=2 * TEXT_PROJECTION,
            # Position table of 32×32 patches: sides up to 32 × 2 × 8 = 512 px.
            pos_embed_max_size=32,
        )
        vae = build_vae()
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        # diffusers annotates the argument with its torch-less placeholder class: the real one is refused.
        scheduler=build_scheduler(shift=3.0),  # type: ignore[arg-type]  # SD3's
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    pipeline.save_pretrained(folder)
    return Path(folder)


@pytest.fixture(scope="session")
def tiny_sd3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a saved tiny SD3 pipeline, built once per test session."""
    return build_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3"))
