"""Download a diffusers pipeline into the Hugging Face cache (HF_HOME): `Dockerfile.gpu`'s PRELOAD_MODEL step.

It fetches what the sdxl backend loads: the repository's fp16 variant when it has one, the full weights
otherwise (core/images/diffusion.py makes the same choice on CUDA), and no other variants or formats.

    python infra/preload_model.py stabilityai/sdxl-turbo
"""

from __future__ import annotations

import sys


def preload(model: str) -> str:
    """The cache folder that now holds `model`."""
    from diffusers import DiffusionPipeline

    try:
        return str(DiffusionPipeline.download(model, variant="fp16"))
    except (OSError, ValueError):  # no fp16 variant: the full weights, as the backend falls back to
        return str(DiffusionPipeline.download(model))


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].strip():
        print("usage: python infra/preload_model.py MODEL_ID", file=sys.stderr)
        return 2
    print(f"preloaded {argv[1]} into {preload(argv[1].strip())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
