"""A tiny, randomly initialised SDXL pipeline saved to disk, so tests can run the real `from_pretrained` code offline.

No model hub is reachable from the test machines, and a real SDXL checkpoint is gigabytes. `build_tiny_sdxl` puts
together a `diffusers.StableDiffusionXLPipeline` with the same architecture shape as SDXL (two CLIP text encoders, a
text_time-conditioned UNet, an 8× VAE, an EulerAncestral scheduler with SDXL Turbo's "trailing" spacing) but with
layers a few dozen channels wide, and saves it with `save_pretrained`. What comes out is a folder of about 5.5 MB
(UNet 4.1, VAE 1.0, text encoders 0.2 each) that loads and runs like a hub snapshot; its images are coloured noise,
not pictures.

Verified with torch 2.13 (CPU), diffusers 0.42.1 and transformers 5.24:

- `diffusers.AutoPipelineForText2Image.from_pretrained(folder, local_files_only=True, dtype=torch.float32,
  add_watermarker=False)` with `HF_HUB_OFFLINE=1` in the environment loads the folder as a
  `StableDiffusionXLPipeline` in about 0.1 s;
- `pipe(prompt=[...], num_inference_steps=1, guidance_scale=0.0, width=64, height=64,
  generator=[torch.Generator().manual_seed(s) for s in seeds])` returns 64×64 PIL images on CPU in fp32 in about
  30 ms (one or a batch of four), and the same seed gives the same pixels whether generated alone or in a batch
  (tests/test_tiny_sdxl.py allows two uint8 levels for summation order; none were seen).

Things measured while writing this, worth knowing for anything that loads the folder:

- fp16 on CPU is about 13× slower than fp32: load with `dtype=torch.float32` there. diffusers 0.42 deprecates
  `torch_dtype=` in favour of `dtype=`.
- `pipe.set_progress_bar_config(disable=True)` keeps tqdm out of test output.
- With numpy 2.4 the EulerAncestral scheduler emits a DeprecationWarning inside diffusers: leave warnings as
  warnings (pyproject's filterwarnings silences this one).
- A folder path that does not exist is taken for a hub repo id; `local_files_only=True` makes that fail at once
  instead of after network retries.

The default image size of the saved pipeline is 64×64 (UNet sample_size 8 × VAE factor 8), so a caller that forgets
width/height still gets the cheap size; any multiple of 8 works (512×512 takes about 0.2 s).

torch, diffusers and transformers are imported inside the functions: every test session loads this module as a
plugin (tests/conftest.py), and most sessions never build the pipeline, so they should not pay for the multi-second
diffusers import.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from transformers import CLIPTextConfig, CLIPTokenizer

# Each text encoder's hidden size; SDXL's UNet cross-attends to the two hidden states concatenated.
TEXT_HIDDEN = 32
# The pooled embedding of text_encoder_2, which SDXL feeds to the UNet's added (text_time) conditioning.
TEXT_PROJECTION = 32
# SDXL embeds six size/crop numbers (original size, crop top-left, target size) with this many dims each.
TIME_EMBED_DIM = 8
# What SDXL's tokenizers use; prompts are padded/truncated to it and the encoders' position tables must cover it.
MAX_TOKENS = 77
LATENT_CHANNELS = 4
# Default image side: UNet sample_size × the VAE's 8× downsampling.
DEFAULT_SIDE = 64
VAE_FACTOR = 8

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins that byte-level BPE (GPT-2, CLIP) uses for the bytes 0..255, in byte order.

    Bytes that are already visible characters stand for themselves; the rest (controls, space, ...) are moved to
    code points from 256 upwards, so every byte of any UTF-8 text maps to a vocabulary entry and nothing is unknown.
    """
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in visible}
    shifted = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return [table[byte] for byte in range(256)]


def _write_tokenizer_files(folder: Path) -> int:
    """Writes a merge-free CLIP vocabulary to `folder` and returns its size.

    Without merges every word is spelt out byte by byte, the last byte in its `</w>` (end-of-word) form, so each
    character and its end-of-word twin is needed. Prompts then cost one token per byte: good enough for tests.
    """
    characters = _byte_characters()
    tokens = [*characters, *(character + "</w>" for character in characters), START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    # The loaders skip the first line as a version header; an empty merge list is valid BPE.
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def _load_tokenizer(folder: Path, vocab_size: int) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    # from_pretrained rather than the constructor: transformers 5 silently ignores vocab_file=/merges_file= there
    # and builds a 3-token vocabulary, while the folder route reads the files the same way on 4.x and 5.x.
    tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS, local_files_only=True)
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"tokenizer in {folder} has {len(tokenizer)} tokens, expected {vocab_size}")
    return tokenizer


def build_clip_tokenizer() -> CLIPTokenizer:
    """The merge-free CLIP tokenizer every tiny pipeline uses (SD3 and Flux too: tests/support/tiny_parts.py)."""
    # The source files live outside any pipeline folder: a pipeline saves its tokenizers in its own layout anyway.
    with tempfile.TemporaryDirectory(prefix="tiny-clip-tokenizer-") as scratch:
        source = Path(scratch)
        return _load_tokenizer(source, _write_tokenizer_files(source))


def clip_text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        projection_dim=TEXT_PROJECTION,
        # SDXL reads the penultimate hidden state, so at least two layers; three keeps that layer a real one.
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        hidden_act="gelu",
        # The pooled output is read at the first end token; the ids must be the tokenizer's, not CLIP's defaults.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_sdxl(folder: Path, *, seed: int = 0) -> Path:
    """Builds a tiny random SDXL pipeline, saves it to `folder` (created if missing) and returns `folder`.

    The same seed gives byte-identical weights, and the global torch RNG is left as it was. Takes about 0.1 s once
    torch, diffusers and transformers are imported (the first call pays for diffusers' lazy submodule imports).
    """
    import torch

    # From their own modules: to type checkers, `from diffusers import X` is diffusers' placeholder for a missing torch.
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from tests.support.tiny_parts import build_vae

    folder = Path(folder)
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()

    # fork_rng: seeding must not change the random stream of whatever test asked for the folder.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = CLIPTextModel(clip_text_config(tokenizer))
        text_encoder_2 = CLIPTextModelWithProjection(clip_text_config(tokenizer_2))
        unet = UNet2DConditionModel(
            sample_size=DEFAULT_SIDE // VAE_FACTOR,
            in_channels=LATENT_CHANNELS,
            out_channels=LATENT_CHANNELS,
            # SDXL's layout in miniature: no attention at the highest resolution, cross-attention below it.
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            transformer_layers_per_block=1,
            # diffusers' historical misnomer: for SDXL's UNet this is the number of heads per block.
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            norm_num_groups=32,
            cross_attention_dim=2 * TEXT_HIDDEN,
            addition_embed_type="text_time",
            addition_time_embed_dim=TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + TEXT_PROJECTION,
        )
        # SDXL's VAE: 4 latent channels, quant convolutions, and its scale, so latents are scaled the way the real
        # pipeline does it (no shift).
        vae = build_vae(latent_channels=LATENT_CHANNELS, quant_convs=True, scaling_factor=0.13025, shift_factor=None)
    # SDXL Turbo's scheduler config: the trailing spacing is what makes a single step start from pure noise.
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="trailing",
    )
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipeline.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a saved tiny SDXL pipeline, built once per test session. Nothing global is changed."""
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))
