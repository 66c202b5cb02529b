"""A tiny, randomly initialised Flux pipeline saved to disk, for tests that load the real thing offline.

`build_tiny_flux` puts together a `diffusers.FluxPipeline` shaped like Flux.1 (a CLIP encoder for the pooled prompt,
a T5 encoder for the sequence, a `FluxTransformer2DModel` with double- and single-stream blocks over 2×2-packed
latents and rotary positions, a 16-channel 8× VAE, a flow-matching scheduler) a few dozen channels wide, and saves
it with `save_pretrained`: a folder of about 2 MB whose `model_index.json` names `FluxPipeline`. Its sides must be
multiples of 16 (8 × the 2×2 packing), as Flux's are; its images are coloured noise.

`guidance_embeds` chooses between a Flux.1-schnell shape (False, the default: the pipeline ignores
`guidance_scale`) and a guidance-distilled Flux.1-dev shape (True: `guidance_scale` is an input of the
transformer). Built parts: tests/support/tiny_parts.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiny_parts import LATENT_CHANNELS, T5_HIDDEN

# Flux packs 2×2 latent pixels into one token: the transformer's input is 4 × the latent channels.
PACKED_CHANNELS = 4 * LATENT_CHANNELS
HEAD_DIM = 16
# Rotary dimensions per axis (text position, row, column); their sum is the head dimension.
ROPE_AXES = (4, 6, 6)


def build_tiny_flux(folder: Path, *, seed: int = 0, guidance_embeds: bool = False) -> Path:
    """Builds the tiny Flux pipeline into `folder` and returns it; the same seed gives the same weights, and the global
    torch RNG is left as it was."""
    import torch
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
    from diffusers.pipelines.flux.pipeline_flux import FluxPipeline
    from transformers import CLIPTextModel

    from tests.support.tiny_parts import build_scheduler, build_t5_encoder, build_t5_tokenizer, build_vae
    from tests.support.tiny_sdxl import TEXT_PROJECTION, build_clip_tokenizer, clip_text_config

    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(clip_text_config(tokenizer))
        text_encoder_2 = build_t5_encoder(tokenizer_2)
        transformer = FluxTransformer2DModel(
            patch_size=1,  # the 2×2 packing happens in the pipeline, before the transformer
            in_channels=PACKED_CHANNELS,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=HEAD_DIM,
            num_attention_heads=2,
            joint_attention_dim=T5_HIDDEN,
            pooled_projection_dim=TEXT_PROJECTION,  # CLIPTextModel's pooled output is its hidden size
            guidance_embeds=guidance_embeds,
            axes_dims_rope=ROPE_AXES,
        )
        vae = build_vae()
    pipeline = FluxPipeline(
        # diffusers annotates the argument with its torch-less placeholder class: the real one is refused.
        scheduler=build_scheduler(shift=1.0),  # type: ignore[arg-type]  # Flux.1-schnell's shift
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipeline.save_pretrained(folder)
    return Path(folder)


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a saved tiny Flux pipeline (schnell-shaped: no guidance embedding), built once per session."""
    return build_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))
