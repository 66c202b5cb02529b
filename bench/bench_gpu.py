"""The sdxl backend at full size on a GPU: per-image latency and throughput against the issue's targets.

    .venv/bin/python -m bench.bench_gpu                        # H100: full-size SDXL, 512×512, eager and compiled
    .venv/bin/python -m bench.bench_gpu --tiny --device cpu --size 64 --runs 5 --duration 2 --warmup 1
                                                               # CPU smoke run of the same flow

No checkpoint is downloaded: the script builds SDXL Turbo's architecture (its public configs: a 2.6 B
parameter UNet, both CLIP text encoders, the 8× VAE, EulerAncestral with trailing spacing) with random
fp16 weights, directly on the GPU, and saves it as an fp16-variant folder. Random weights take the same
arithmetic as trained ones, so the model timings stand for SDXL Turbo; the images are noise, whose PNGs
are larger and slower to encode than pictures', so the HTTP figures err on the slow side. The service
loads that folder through its real `load_pipeline`. Measured, each with POKEMON_DIFFUSION_COMPILE off and on:

  (i)   pipeline latency per image at batch 1 — `DiffusionRunner` called directly, CUDA-synchronised,
        p50/p99 over --runs calls (target p50 ≤ 60 ms at 512×512 on an H100); also batch --max-batch;
  (ii)  end-to-end HTTP latency at batch 1 — `wrk -c1` against `python -m handlers.server`;
  (iii) throughput at concurrency 1, 8 and 32 — wrk against the same server (target ≥ 40 images/s at 32).

Every GPU step runs in a child process (this script never imports torch), so each one frees its memory
and compiled state when it ends and a step that overruns can be killed with all it started. The whole
run stops starting new steps once --budget seconds are spent (default 470 s: the lent machines allow
600 s per command), and the table says what was skipped. Only 127.0.0.1 is contacted; HF_HUB_OFFLINE=1.

Exit status: 0 done, 1 a step failed or requests failed, 2 could not run, 3 a target missed with
--fail-on-miss.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import BenchError, Processes, base_env, setting, spawn
from bench.report import Outcome, environment, finish, versions
from bench.sdxl_service import (
    Batches,
    build_tiny_pipeline,
    format_distribution,
    measure_wrk,
    probe,
    service_env,
    start_service,
)
from bench.wrk import WrkResult, require_wrk, run_wrk

# The steps that import torch run in children: `python -m bench.bench_gpu --worker STEP …`.
WORKER_MODULE = "bench.bench_gpu"
TARGET_P50_MS = 60.0
TARGET_IMAGES_PER_S = 40.0
TARGET_CONCURRENCY = 32
TARGET_SIZE = 512
# Below this much budget a step is not started: loading the full model alone takes about this long.
MIN_STEP_S = 45.0
WORKER_STOP_GRACE_S = 5.0

# SDXL Turbo's public configs (stabilityai/sdxl-turbo: unet/, vae/, text_encoder/, text_encoder_2/).
UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),  # diffusers' misnomer: heads per block
    "cross_attention_dim": 2048,  # the two text encoders' hidden states side by side: 768 + 1280
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,  # 6 size/crop numbers × 256 + the 1280 pooled text embedding
    "norm_num_groups": 32,
}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.13025,
    "force_upcast": False,  # fp16 decode, as the service runs it by default (POKEMON_DIFFUSION_VAE_UPCAST off)
}
TEXT_ENCODER_CONFIG: dict[str, Any] = {  # CLIP ViT-L/14
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
TEXT_ENCODER_2_CONFIG: dict[str, Any] = {  # OpenCLIP ViT-bigG/14
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
CLIP_VOCAB = 49408
MAX_TOKENS = 77
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "trailing",  # what lets SDXL Turbo's single step start from pure noise
}


# --- children: the steps that import torch ------------------------------------------------------


def _clip_byte_characters() -> list[str]:
    """Byte-level BPE's printable stand-in for each byte 0..255 (GPT-2's table, which CLIP shares)."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in visible}
    for shift, byte in enumerate(byte for byte in range(256) if byte not in table):
        table[byte] = chr(256 + shift)
    return [table[byte] for byte in range(256)]


def write_clip_tokenizer(folder: Path) -> int:
    """A merge-free CLIP vocabulary (one token per byte) in `folder`; returns its size.

    The text encoders always run on 77 padded positions, so a tokenizer that spends more tokens per word
    changes nothing in the cost; it only has to stay below the encoders' 49408 ids, which 514 does.
    """
    characters = _clip_byte_characters()
    tokens = [*characters, *(character + "</w>" for character in characters), "<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: index for index, token in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")  # header only: no merges
    return len(vocab)


def build_full_sdxl(folder: Path, device: str) -> dict[str, object]:
    """SDXL Turbo's architecture with random fp16 weights, saved to `folder` as the hub's fp16 variant."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-tokenizer-") as scratch:
        size = write_clip_tokenizer(Path(scratch))
        # from_pretrained, not the constructor: transformers 5 ignores vocab_file= there.
        tokenizers = [
            CLIPTokenizer.from_pretrained(scratch, model_max_length=MAX_TOKENS, local_files_only=True) for _ in range(2)
        ]
    if len(tokenizers[0]) != size:
        raise RuntimeError(f"the tokenizer has {len(tokenizers[0])} tokens, expected {size}")
    special = {
        "bos_token_id": tokenizers[0].bos_token_id,
        "eos_token_id": tokenizers[0].eos_token_id,  # the pooled output is read at the first of these
        "pad_token_id": tokenizers[0].pad_token_id,
    }

    def text_config(shape: dict[str, Any]) -> Any:
        return CLIPTextConfig(vocab_size=CLIP_VOCAB, max_position_embeddings=MAX_TOKENS, **shape, **special)

    torch.manual_seed(0)
    # Constructed on the device: random init of 3.5 B parameters takes minutes on a CPU and a second on a
    # GPU. One model at a time, each halved at once, keeps the fp32 peak to the UNet's 10 GB.
    with torch.device(device):
        unet = UNet2DConditionModel(**UNET_CONFIG).half()
        vae = AutoencoderKL(**VAE_CONFIG).half()
        text_encoder = CLIPTextModel(text_config(TEXT_ENCODER_CONFIG)).half()
        text_encoder_2 = CLIPTextModelWithProjection(text_config(TEXT_ENCODER_2_CONFIG)).half()
    built_s = time.perf_counter() - began
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizers[0],
        tokenizer_2=tokenizers[1],
        unet=unet,
        scheduler=EulerAncestralDiscreteScheduler(**SCHEDULER_CONFIG),
        add_watermarker=False,
    )
    # The fp16 variant, as sdxl-turbo ships it: the service's CUDA path asks for variant="fp16" first.
    pipeline.save_pretrained(folder, variant="fp16", safe_serialization=True)
    parameters = {
        name: sum(p.numel() for p in model.parameters())
        for name, model in (
            ("unet", unet),
            ("vae", vae),
            ("text_encoder", text_encoder),
            ("text_encoder_2", text_encoder_2),
        )
    }
    return {
        "build_s": built_s,
        "save_s": time.perf_counter() - began - built_s,
        "parameters": parameters,
        "folder_bytes": sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()),
    }


def device_info(device: str) -> dict[str, object]:
    import diffusers
    import torch
    import transformers

    info: dict[str, object] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch sees no CUDA device (a CPU build of torch?)")
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        info["gpu"] = "none (CPU run)"
    return info


class TimedPipeline:
    """Stands in for the pipeline inside `DiffusionRunner` and times just the pipeline call.

    The runner's own time adds the PNG encoding; the difference between the two is what the encoding
    costs. Synchronising before and after keeps queued GPU work from leaking across calls.
    """

    def __init__(self, pipeline: Any, synchronize: Callable[[], None]) -> None:
        self._pipeline = pipeline
        self._synchronize = synchronize
        self.device = pipeline.device
        self.last_s = 0.0

    def __call__(self, **kwargs: Any) -> Any:
        self._synchronize()
        began = time.perf_counter()
        output = self._pipeline(**kwargs)
        self._synchronize()
        self.last_s = time.perf_counter() - began
        return output


def time_pipeline(runs: int, warmup_runs: int, batch: int, batch_runs: int) -> dict[str, object]:
    """(i): load through the service's loader (settings from the environment) and time `DiffusionRunner`."""
    import torch

    from core import wiring
    from core.config import load_settings
    from core.creature import Rarity
    from core.images.diffusion import DiffusionRunner, ImageJob, build_prompt, load_pipeline

    settings = load_settings()
    options = wiring.pipeline_options(settings)
    began = time.perf_counter()
    pipeline = load_pipeline(options)
    load_s = time.perf_counter() - began
    cuda = pipeline.device.type == "cuda"

    def synchronize() -> None:
        if cuda:
            torch.cuda.synchronize()

    timed = TimedPipeline(pipeline, synchronize)
    runner = DiffusionRunner(timed, options)
    rarities = list(Rarity)

    def jobs(count: int, first_seed: int) -> list[ImageJob]:
        # Real prompts from the service's template: the text encoders see the usual token counts.
        return [
            ImageJob(
                seed=first_seed + index,
                prompt=build_prompt(
                    settings.prompt_template, f"Benchmon{first_seed + index}", rarities[index % len(rarities)]
                ),
            )
            for index in range(count)
        ]

    def call(count: int, first_seed: int) -> tuple[float, float, int]:
        began = time.perf_counter()
        images = runner(jobs(count, first_seed))
        synchronize()
        return time.perf_counter() - began, timed.last_s, sum(len(image.base64_png) for image in images)

    first_s, _, _ = call(1, 0)  # includes compilation when POKEMON_DIFFUSION_COMPILE=1
    for index in range(warmup_runs):
        call(1, 1 + index)
    runner_ms: list[float] = []
    pipeline_ms: list[float] = []
    png_bytes: list[int] = []
    for index in range(runs):
        total, inner, size = call(1, 1000 + index)
        runner_ms.append(total * 1000)
        pipeline_ms.append(inner * 1000)
        png_bytes.append(size)
    batch_result: dict[str, object] = {}
    if batch > 1 and batch_runs > 0:
        first_batch_s, _, _ = call(batch, 0)  # a compiled model specialises on the batch size
        batch_ms = [call(batch, 10_000 + index * batch)[1] * 1000 for index in range(batch_runs)]
        batch_result = {
            "size": batch,
            "first_call_s": first_batch_s,
            "pipeline_ms_median": statistics.median(batch_ms),
            "images_per_s": batch * 1000 / statistics.median(batch_ms),
        }
    memory_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return {
        "load_s": load_s,
        "first_call_s": first_s,
        "pipeline_ms": pipeline_ms,
        "runner_ms": runner_ms,
        "png_base64_bytes_mean": statistics.fmean(png_bytes),
        "batch": batch_result,
        "peak_memory_gib": memory_gib,
        "device": str(pipeline.device),
    }


def worker_main(argv: Sequence[str]) -> int:
    """`python -m bench.bench_gpu --worker STEP OUT [ARGS…]`: one step in its own process, its result as JSON in OUT."""
    step, out, *rest = argv
    if step == "info":
        result = device_info(rest[0])
    elif step == "build":
        result = build_full_sdxl(Path(rest[0]), rest[1])
    elif step == "pipeline":
        runs, warmup_runs, batch, batch_runs = (int(value) for value in rest)
        result = time_pipeline(runs, warmup_runs, batch, batch_runs)
    else:
        raise SystemExit(f"unknown worker step {step!r}")
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# --- the orchestrator ---------------------------------------------------------------------------


class Budget:
    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds

    @property
    def left(self) -> float:
        return self._deadline - time.monotonic()


class StepSkipped(Exception):
    """Not started: too little of --budget was left."""


class StepFailed(Exception):
    """Ran and failed; the message says why (with the end of its output)."""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The child leads its own session: this reaches the compile workers it started, and nothing else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=WORKER_STOP_GRACE_S)


def run_worker(
    step: str, args: Sequence[str], *, env: dict[str, str], scratch: Path, budget: Budget, label: str
) -> dict[str, Any]:
    if budget.left < MIN_STEP_S:
        raise StepSkipped(f"{label}: skipped, {max(0.0, budget.left):.0f} s of --budget left")
    out = scratch / f"{label}.json"
    log_path = scratch / f"{label}.log"
    argv = [sys.executable, "-m", WORKER_MODULE, "--worker", step, str(out), *args]
    process = spawn(argv, env=env, log_path=log_path, cpu=None)
    try:
        process.wait(timeout=budget.left)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{label}: stopped when --budget ran out; its output ends:\n{_tail(log_path)}") from None
    finally:
        _kill_group(process)  # compile workers it may have left behind
    if process.returncode != 0 or not out.is_file():
        raise StepFailed(f"{label}: exited with status {process.returncode}; its output ends:\n{_tail(log_path)}")
    return dict(json.loads(out.read_text()))


def _tail(path: Path, chars: int = 2500) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no output)"


def variant_settings(args: argparse.Namespace, compiled: bool, scratch: Path) -> dict[str, str]:
    """What one variant sets on top of the service's settings, for the pipeline step and the server alike.

    The shared compile cache lets the server reuse what the pipeline step compiled, instead of spending
    minutes of the budget compiling the same graphs again.
    """
    return {
        "POKEMON_MAX_BATCH": str(args.max_batch),
        **dict(args.env),
        "POKEMON_DIFFUSION_COMPILE": "1" if compiled else "0",
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor-cache"),
    }


def worker_env(model: Path, args: argparse.Namespace, compiled: bool, scratch: Path) -> dict[str, str]:
    """The environment the server under test gets (its port aside), so `load_settings()` reads the same."""
    overrides = variant_settings(args, compiled, scratch)
    return service_env(
        0, scratch, model=model, width=args.size, height=args.size, device=args.device, overrides=overrides
    )


@dataclass
class LevelResult:
    result: WrkResult
    batches: Batches


@dataclass
class ServerResult:
    ready_s: float
    response_bytes: int
    levels: dict[int, LevelResult] = field(default_factory=dict)


def measure_server(
    model: Path, args: argparse.Namespace, compiled: bool, scratch: Path, budget: Budget, label: str
) -> ServerResult:
    """(ii) and (iii): the real service, warmed up at each concurrency, then one measured run at each."""
    needed = MIN_STEP_S + len(args.concurrency) * (args.warmup + args.duration)
    if budget.left < needed:
        raise StepSkipped(f"{label}: skipped, {max(0.0, budget.left):.0f} s of --budget left (needs ~{needed:.0f})")
    processes = Processes()
    overrides = variant_settings(args, compiled, scratch)
    try:
        service, ready_s = start_service(
            processes,
            scratch,
            name=label,
            model=model,
            width=args.size,
            height=args.size,
            device=args.device,
            cpu=None,  # a GPU server wants its cores: PNG encoding, the CUDA launch thread
            overrides=overrides,
            ready_timeout=max(1.0, budget.left - len(args.concurrency) * (args.warmup + args.duration)),
        )
        result = ServerResult(ready_s, probe(service, args.size, args.size))
        print(f"  {label}: serving after {ready_s:.1f} s", flush=True)
        for connections in args.concurrency:
            # Warm-up: with compile on, batch sizes between 1 and the largest compile here, not while timed.
            run_wrk(service.port, connections=connections, seconds=args.warmup, cpu=args.wrk_cpu)
        for connections in args.concurrency:
            wrk, batches = measure_wrk(service, connections=connections, seconds=args.duration, cpu=args.wrk_cpu)
            result.levels[connections] = LevelResult(wrk, batches)
            print(
                f"  {label}: -c{connections:<3} {wrk.requests_per_s:8.1f} images/s  p50 {wrk.p50_ms:8.1f} ms"
                f"  p99 {wrk.p99_ms:8.1f} ms  batch mean {batches.mean_size:5.2f}"
                f"  errors {wrk.errors}  fallbacks {batches.fallbacks}",
                flush=True,
            )
        return result
    except BenchError as exc:  # a server that did not come up or wrk failing is this step's failure, not the run's
        raise StepFailed(f"{label}: {exc}") from None
    finally:
        processes.stop_all()  # SIGTERM, SIGKILL after 12 s
        for process in processes.started:
            _kill_group(process)  # compile workers a server killed mid-compile may leave


# --- report -------------------------------------------------------------------------------------


@dataclass
class Variant:
    compiled: bool
    pipeline: dict[str, Any] | None = None
    server: ServerResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "compiled" if self.compiled else "eager"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def verdict(value: float | None, ok: Callable[[float], bool], judged: bool) -> str:
    if value is None or not judged:
        return ""
    return "PASS" if ok(value) else "MISS"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def rows_for(variant: Variant, args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """Row label → (cell text, PASS/MISS or ""); "—" where the step was skipped or failed."""
    # The targets are stated for full-size SDXL at 512×512 on a GPU; anything else is a smoke run.
    judged = not args.tiny and args.device == "cuda" and args.size == TARGET_SIZE
    rows: dict[str, tuple[str, str]] = {}
    pipeline = variant.pipeline or {}
    p50 = statistics.median(pipeline["pipeline_ms"]) if pipeline else None
    rows["(i) pipeline p50 ms, batch 1"] = (_number(p50), verdict(p50, lambda v: v <= TARGET_P50_MS, judged))
    p99 = percentile(pipeline["pipeline_ms"], 0.99) if pipeline else None
    rows["    pipeline p99 ms, batch 1"] = (_number(p99), "")
    runner = statistics.median(pipeline["runner_ms"]) if pipeline else None
    rows["    + PNG (DiffusionRunner) p50 ms"] = (_number(runner), "")
    rows[f"    images/s at batch {args.max_batch}"] = (_number(pipeline.get("batch", {}).get("images_per_s")), "")
    rows["    load s"] = (_number(pipeline.get("load_s")), "")
    rows["    first call s (compiles)"] = (_number(pipeline.get("first_call_s")), "")
    levels = variant.server.levels if variant.server else {}
    c1 = levels.get(1)
    http_p50 = c1.result.p50_ms if c1 else None
    rows["(ii) HTTP p50 ms, -c1"] = (_number(http_p50), verdict(http_p50, lambda v: v <= TARGET_P50_MS, judged))
    rows["     HTTP p99 ms, -c1"] = (_number(c1.result.p99_ms if c1 else None), "")
    for connections in args.concurrency:
        level = levels.get(connections)
        rate = level.result.requests_per_s if level else None
        mark = verdict(rate, lambda v: v >= TARGET_IMAGES_PER_S, judged and connections == TARGET_CONCURRENCY)
        rows[f"(iii) images/s, -c{connections}"] = (_number(rate), mark)
        detail = f"{level.result.p99_ms:.1f} / {level.batches.mean_size:.2f}" if level else "—"
        rows[f"      p99 ms / mean batch, -c{connections}"] = (detail, "")
    rows["      server ready after s"] = (_number(variant.server.ready_s if variant.server else None), "")
    return rows


def render(variants: list[Variant], info: dict[str, Any], build: dict[str, Any], args: argparse.Namespace) -> str:
    out = io.StringIO()
    gpu = info.get("gpu", "?")
    out.write(
        f"\ndevice: {gpu} | torch {info.get('torch')} (CUDA {info.get('cuda')}) | diffusers {info.get('diffusers')}"
        f" | transformers {info.get('transformers')}\n"
    )
    if args.tiny:
        model = "tiny random SDXL (tests/support/tiny_sdxl.py) — smoke run, no verdicts"
    elif args.model is not None:
        model = f"{args.model} (--model)"
    else:
        params = build.get("parameters", {})
        total = sum(params.values()) / 1e9 if params else 0.0
        model = f"SDXL Turbo architecture, random fp16 weights ({total:.2f} B parameters)"
    out.write(
        f"model: {model}; {args.size}×{args.size}, POKEMON_DIFFUSION_STEPS=1, POKEMON_MAX_BATCH={args.max_batch}, "
        f"settings overridden: {dict(args.env) or 'none'}\n\n"
    )
    tables = {variant.name: rows_for(variant, args) for variant in variants}
    header = f"{'measurement':<38}" + "".join(f" {name:>16}" for name in tables) + "  target"
    out.write(header + "\n" + "-" * (len(header) + 8) + "\n")
    targets = {
        "(i) pipeline p50 ms, batch 1": f"≤ {TARGET_P50_MS:.0f} ms",
        "(ii) HTTP p50 ms, -c1": f"≤ {TARGET_P50_MS:.0f} ms",
        f"(iii) images/s, -c{TARGET_CONCURRENCY}": f"≥ {TARGET_IMAGES_PER_S:.0f}/s",
    }
    for label in next(iter(tables.values())):
        cells = "".join(f" {' '.join(filter(None, table[label])):>16}" for table in tables.values())
        out.write(f"{label:<38}{cells}  {targets.get(label, '')}".rstrip() + "\n")
    for variant in variants:
        if variant.server is not None:
            for connections, level in variant.server.levels.items():
                out.write(
                    f"\n{variant.name} -c{connections}: batch sizes {format_distribution(level.batches.distribution())}"
                    f" (size:batches), errors {level.result.errors}, fallbacks {level.batches.fallbacks}"
                )
        if variant.pipeline is not None:
            memory = variant.pipeline["peak_memory_gib"]
            out.write(
                f"\n{variant.name} pipeline: PNG {variant.pipeline['png_base64_bytes_mean'] / 1024:.0f} KiB base64 per"
                f" image, peak GPU memory {'n/a' if memory is None else f'{memory:.1f} GiB'}"
            )
    out.write("\n")
    for variant in variants:
        for note in variant.notes:
            out.write(f"\n{variant.name}: {note}\n")
    out.write(
        f"\nload: wrk -t1 --latency on CPU {args.wrk_cpu}, {args.warmup} s warm-up + {args.duration} s per concurrency;"
        f" pipeline: {args.runs} timed calls after {args.warmup_runs} warm-up calls\n"
    )
    if build:
        out.write(
            f"model built in {build.get('build_s', 0):.1f} s, saved in {build.get('save_s', 0):.1f} s"
            f" ({build.get('folder_bytes', 0) / 2**30:.2f} GiB)\n"
        )
    return out.getvalue()


# --- entry point --------------------------------------------------------------------------------


def _concurrency(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("each concurrency must be ≥ 1")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_gpu", description="Full-size SDXL on a GPU through the service: latency and throughput."
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="the service's device (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="the tiny test pipeline instead (a smoke run)")
    parser.add_argument("--model", type=Path, help="an existing pipeline folder: skip the build")
    parser.add_argument("--size", type=int, default=TARGET_SIZE, help="POKEMON_IMAGE_WIDTH and _HEIGHT (default 512)")
    parser.add_argument(
        "--compile",
        choices=("off", "on", "both"),
        default="both",
        help="POKEMON_DIFFUSION_COMPILE variants to measure (default both, eager first)",
    )
    parser.add_argument(
        "--parts", choices=("all", "pipeline", "server"), default="all", help="(i) pipeline, (ii)+(iii) server"
    )
    parser.add_argument("--runs", type=int, default=30, help="timed pipeline calls at batch 1 (default 30)")
    parser.add_argument("--warmup-runs", type=int, default=3, help="untimed pipeline calls first (default 3)")
    parser.add_argument("--batch-runs", type=int, default=5, help="timed calls at --max-batch (default 5; 0 skips)")
    parser.add_argument("--max-batch", type=int, default=8, help="POKEMON_MAX_BATCH (default 8, the service's)")
    parser.add_argument(
        "--concurrency", type=_concurrency, default=[1, 8, TARGET_CONCURRENCY], help="wrk -c values (default 1,8,32)"
    )
    parser.add_argument("--duration", type=int, default=8, help="measured seconds per concurrency (default 8)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per concurrency (default 3)")
    parser.add_argument("--wrk-cpu", type=int, help="CPU wrk is pinned to (default: the last available)")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds after which no step starts (default 470)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=setting,
        metavar="KEY=VALUE",
        help="a service setting for every step, e.g. POKEMON_DIFFUSION_ATTENTION_SLICING=0 (repeatable)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when a target is missed")
    args = parser.parse_args(argv)
    if min(args.runs, args.duration, args.warmup, args.max_batch) < 1 or min(args.warmup_runs, args.batch_runs) < 0:
        parser.error("--runs, --duration, --warmup and --max-batch must be ≥ 1; the other counts ≥ 0")
    if args.size < 64 or args.size % 8:
        parser.error("--size must be a multiple of 8, at least 64")
    if args.device == "cpu" and not args.tiny and args.model is None:
        parser.error("the full-size model is built as an fp16 variant for the GPU: on CPU use --tiny")
    if args.wrk_cpu is None:
        args.wrk_cpu = max(os.sched_getaffinity(0))
    return args


def run(args: argparse.Namespace) -> tuple[list[Variant], dict[str, Any], dict[str, Any]]:
    budget = Budget(args.budget)
    variants = [Variant(compiled) for compiled in {"off": [False], "on": [True], "both": [False, True]}[args.compile]]
    with tempfile.TemporaryDirectory(prefix="pokemon-bench-gpu-") as folder:
        scratch = Path(folder)
        plain_env = {**base_env(), "HF_HUB_OFFLINE": "1"}
        try:
            info = run_worker("info", [args.device], env=plain_env, scratch=scratch, budget=budget, label="info")
        except (StepFailed, StepSkipped) as exc:
            raise BenchError(str(exc)) from None
        print(f"device: {info.get('gpu')} | torch {info.get('torch')} | diffusers {info.get('diffusers')}", flush=True)
        build: dict[str, Any] = {}
        if args.model is not None:
            model = args.model.resolve()
        elif args.tiny:
            model = build_tiny_pipeline(scratch / "tiny-sdxl")
        else:
            model = scratch / "sdxl-random"
            print("building the full-size model on the device and saving it (~7 GB) …", flush=True)
            try:
                build = run_worker(
                    "build", [str(model), args.device], env=plain_env, scratch=scratch, budget=budget, label="build"
                )
            except (StepFailed, StepSkipped) as exc:
                raise BenchError(str(exc)) from None
            print(f"  built in {build['build_s']:.1f} s, saved in {build['save_s']:.1f} s", flush=True)
        for variant in variants:
            env = worker_env(model, args, variant.compiled, scratch)
            if args.parts in ("all", "pipeline"):
                label = f"pipeline-{variant.name}"
                print(f"{label}: loading and timing …", flush=True)
                try:
                    pipeline_args = [str(args.runs), str(args.warmup_runs), str(args.max_batch), str(args.batch_runs)]
                    variant.pipeline = run_worker(
                        "pipeline", pipeline_args, env=env, scratch=scratch, budget=budget, label=label
                    )
                    p50 = statistics.median(variant.pipeline["pipeline_ms"])
                    print(f"  {label}: p50 {p50:.1f} ms, first call {variant.pipeline['first_call_s']:.1f} s")
                except (StepFailed, StepSkipped) as exc:
                    variant.notes.append(str(exc))
                    print(f"  {exc}", flush=True)
            if args.parts in ("all", "server"):
                label = f"server-{variant.name}"
                print(f"{label}: starting …", flush=True)
                try:
                    variant.server = measure_server(model, args, variant.compiled, scratch, budget, label)
                except (StepFailed, StepSkipped) as exc:
                    variant.notes.append(str(exc))
                    print(f"  {exc}", flush=True)
    return variants, info, build


def figures(variants: list[Variant], info: dict[str, Any], build: dict[str, Any], args: argparse.Namespace) -> object:
    def server(result: ServerResult | None) -> object:
        if result is None:
            return None
        return {
            "ready_s": result.ready_s,
            "response_bytes": result.response_bytes,
            "levels": {
                str(connections): {
                    "requests_per_s": level.result.requests_per_s,
                    "p50_ms": level.result.p50_ms,
                    "p99_ms": level.result.p99_ms,
                    "errors": level.result.errors,
                    "batch_sizes": level.batches.distribution(),
                    "fallbacks": level.batches.fallbacks,
                }
                for connections, level in result.levels.items()
            },
        }

    return {
        "device": info,
        "build": build,
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "variants": {
            variant.name: {"pipeline": variant.pipeline, "server": server(variant.server), "notes": variant.notes}
            for variant in variants
        },
        "environment": environment(),
        **versions("torch", "diffusers"),
    }


def failed(variants: list[Variant]) -> bool:
    for variant in variants:
        if any("skipped" not in note for note in variant.notes):
            return True
        if variant.server is not None and any(
            level.result.errors or level.batches.fallbacks for level in variant.server.levels.values()
        ):
            return True
    return False


def missed(variants: list[Variant], args: argparse.Namespace) -> bool:
    """A target judged in some variant and met in none (the service can be deployed either way)."""
    marks: dict[str, set[str]] = {}
    for variant in variants:
        for label, (_, mark) in rows_for(variant, args).items():
            if mark:
                marks.setdefault(label, set()).add(mark)
    return any("PASS" not in found for found in marks.values())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    args = parse_args(argv)

    def measure() -> Outcome:
        if args.parts != "pipeline":
            require_wrk()
        variants, info, build = run(args)
        return Outcome(
            render(variants, info, build, args),
            lambda: figures(variants, info, build, args),
            valid=not failed(variants),
            missed=missed(variants, args),
        )

    return finish("bench_gpu", measure, json_path=args.json, fail_on_miss=args.fail_on_miss)


if __name__ == "__main__":
    raise SystemExit(main())
