"""Parts the tiny SD3 and Flux pipelines share (tests/support/tiny_sd3.py, tiny_flux.py): a T5 encoder and its
tokenizer, a 16-channel VAE (whose layout tiny_sdxl.py reuses), the flow-matching scheduler. All random, a few
dozen channels wide, built offline.

The T5 tokenizer is made in memory: transformers 5's `T5Tokenizer` (backed by the `tokenizers` library;
`T5TokenizerFast` is its alias there) takes a Unigram vocabulary as (piece, score) pairs, so one piece per
printable ASCII character and `▁` for the spaces T5's Metaspace pre-tokenizer turns into it is a complete, if
wordy, vocabulary (one token per character).
The pipelines save it as `tokenizer.json` in their `tokenizer_2`/`tokenizer_3` folder and load it back from there
as the class their `model_index.json` names.

Measured with torch 2.13 (CPU), diffusers 0.42.1, transformers 5.24 and tokenizers 0.23: either pipeline saves
to about 2 MB, loads in about 0.4 s, and draws a 64×64 image in one step in 0.1 to 0.2 s (a batch of four about
as fast). Imports are inside the functions: most test sessions never build these pipelines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import T5EncoderModel
    from transformers.models.t5.tokenization_t5 import T5Tokenizer

# The width of the T5 encoder's hidden states, which the transformers' joint attention reads.
T5_HIDDEN = 32
# Both families' latents have 16 channels (SDXL's have 4).
LATENT_CHANNELS = 16
# Default image side of the tiny pipelines, and the VAE's 8× downsampling every released model has.
DEFAULT_SIDE = 64
VAE_FACTOR = 8

_T5_SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5's own vocabulary
_SPACE_PIECE = "\u2581"  # "▁", what the Metaspace pre-tokenizer makes of a space


def build_t5_tokenizer() -> T5Tokenizer:
    # transformers 5's T5Tokenizer is the tokenizers-backed one (`T5TokenizerFast` is its alias there).
    from transformers.models.t5.tokenization_t5 import T5Tokenizer

    pieces = [(token, 0.0) for token in _T5_SPECIALS]
    pieces += [(chr(code), -1.0) for code in range(ord(" ") + 1, ord("~") + 1)]
    pieces.append((_SPACE_PIECE, -1.0))
    # extra_ids=0: T5's hundred <extra_id_N> sentinel tokens are for span corruption, not for encoding prompts.
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    if tokenizer.unk_token_id in tokenizer("Voltaran, a rare creature!").input_ids:
        raise RuntimeError("the tiny T5 tokenizer does not cover plain ASCII text")
    return tokenizer


def build_t5_encoder(tokenizer: T5Tokenizer) -> T5EncoderModel:
    """Call under a seeded `torch.random.fork_rng`: the weights are random."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=T5_HIDDEN,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",  # T5 v1.1's, which SD3 and Flux use
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return T5EncoderModel(config)


def build_vae(
    *,
    latent_channels: int = LATENT_CHANNELS,
    quant_convs: bool = False,
    scaling_factor: float = 0.3611,
    shift_factor: float | None = 0.1159,
) -> AutoencoderKL:
    """An 8× VAE a few channels wide; call under a seeded RNG.

    The defaults are SD3's and Flux's VAE (16 channels, no quant convolutions, Flux's scale and shift, so latents
    are scaled and shifted the way the real pipelines do it); tests/support/tiny_sdxl.py passes SDXL's values.
    """
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    vae: AutoencoderKL = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        # Four blocks: three 2× downsamplings, the 8× of the real VAEs, so the size rules are the real ones.
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        # Narrow at full resolution, where a convolution costs the most on CPU.
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=latent_channels,
        sample_size=DEFAULT_SIDE,
        use_quant_conv=quant_convs,
        use_post_quant_conv=quant_convs,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    )
    return vae


def build_scheduler(*, shift: float) -> FlowMatchEulerDiscreteScheduler:
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler

    scheduler: FlowMatchEulerDiscreteScheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    return scheduler
