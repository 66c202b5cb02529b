"""The service on the `sdxl` backend as the sdxl benchmarks (bench_diffusion, bench_gpu) run it: a pipeline
folder, the server started on it and ready, and the batch sizes it ran, read from its own JSON log.
"""

from __future__ import annotations

import base64
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import HOST, BenchError, Processes, Server, base_env, http_get, start_server
from bench.wrk import WrkResult, run_wrk
from tests.support.paths import REPO

READY_TIMEOUT_S = 300.0
BUILD_TIMEOUT_S = 600.0
# After wrk stops, requests still in flight finish and log; the log is read once it has been quiet this
# long, so that a round's batches are not counted in the next round.
LOG_QUIET_S = 0.3
LOG_SETTLE_MAX_S = 10.0

_BUILD_TINY = (
    "import sys; from pathlib import Path; from tests.support.tiny_sdxl import build_tiny_sdxl;"
    " build_tiny_sdxl(Path(sys.argv[1]))"
)


# --- the pipeline and the service ---------------------------------------------------------------


def build_tiny_pipeline(folder: Path) -> Path:
    """tests/support/tiny_sdxl.py's pipeline, built in a child process.

    A child, so that this process never imports torch: its thread pools would make the fork behind
    every pinned `Popen(preexec_fn=...)` unsafe, and the import alone costs seconds.
    """
    env = {**base_env(), "HF_HUB_OFFLINE": "1"}
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _BUILD_TINY, str(folder)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"building the tiny pipeline took over {BUILD_TIMEOUT_S:.0f} s") from None
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout)[-2000:]
        raise BenchError(f"building the tiny pipeline failed ({completed.returncode}):\n{tail}")
    return folder


def service_env(
    port: int, scratch: Path, *, model: Path, width: int, height: int, device: str, overrides: dict[str, str]
) -> dict[str, str]:
    return {
        **base_env(),
        "POKEMON_HOST": HOST,
        "POKEMON_PORT": str(port),
        "POKEMON_GENERATION_BACKEND": "sdxl",
        "POKEMON_RATE_LIMIT_PER_MIN": "0",
        # Paths that do not exist: the server then serves plain HTTP, which is what wrk speaks here.
        "POKEMON_TLS_CERT": str(scratch / "no-cert.pem"),
        "POKEMON_TLS_KEY": str(scratch / "no-key.pem"),
        "POKEMON_DIFFUSION_MODEL": str(model),
        "POKEMON_IMAGE_WIDTH": str(width),
        "POKEMON_IMAGE_HEIGHT": str(height),
        "POKEMON_DIFFUSION_DEVICE": device,
        "HF_HUB_OFFLINE": "1",
        "LOG_JSON": "1",
        "LOG_LEVEL": "INFO",  # sdxl.generate, the batch sizes, is an INFO line
        **overrides,
    }


def _log_tail(log_path: Path, chars: int = 3000) -> str:
    # Without the per-request lines: the health polling would push the load failure out of view.
    lines = log_path.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if '"http.re' not in line)[-chars:]


def wait_ready(service: Server, timeout: float) -> float:
    """Waits for `/health/ready` (the model loaded and warmed), then checks the sdxl backend is what serves.

    Returns the seconds it waited. A load failure also ends in "ready" — the files backend serving —
    which would make this a benchmark of the wrong thing, hence the component check.
    """
    began = time.monotonic()
    deadline = began + timeout
    while True:
        if service.process.poll() is not None:
            status = service.process.returncode
            raise BenchError(f"the service exited with status {status}; its log ends:\n{_log_tail(service.log_path)}")
        with contextlib.suppress(OSError):
            status, _ = http_get(service.port, "/health/ready", timeout=2.0)
            if status == 200:
                break
        if time.monotonic() > deadline:
            raise BenchError(
                f"the model was not ready within {timeout:.0f} s; the log ends:\n{_log_tail(service.log_path)}"
            )
        time.sleep(0.25)
    waited = time.monotonic() - began
    _, body = http_get(service.port, "/health")
    health = json.loads(body)
    images = health["components"]["images"]
    if health["backend"] != "sdxl" or images["status"] != "ok":
        raise BenchError(f"the sdxl backend is not serving: {images}; the log ends:\n{_log_tail(service.log_path)}")
    return waited


def png_size(image_base64: str) -> tuple[int, int]:
    # The IHDR chunk is always first: width and height are bytes 16..24 of any PNG.
    header = base64.b64decode(image_base64[:32])
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def probe(service: Server, width: int, height: int) -> int:
    """One request: answered 200, by the sdxl backend, at the configured size. Returns the response size."""
    status, body = http_get(service.port, "/v1/generate", timeout=120.0)
    if status != 200:
        raise BenchError(f"GET /v1/generate answered {status}: {body[:300]!r}")
    payload = json.loads(body)
    source = payload["metadata"]["imageSource"]
    size = png_size(payload["imageBase64"])
    if source != "sdxl" or size != (width, height):
        raise BenchError(f"expected a {width}×{height} sdxl image, got a {size[0]}×{size[1]} {source} image")
    return len(body)


def start_service(
    processes: Processes,
    scratch: Path,
    *,
    name: str,
    model: Path,
    width: int,
    height: int,
    device: str,
    cpu: int | None,
    overrides: dict[str, str],
    ready_timeout: float = READY_TIMEOUT_S,
) -> tuple[Server, float]:
    """Starts the service and waits until it serves sdxl images; returns it and the seconds that took."""
    began = time.monotonic()

    def env(port: int) -> dict[str, str]:
        return service_env(port, scratch, model=model, width=width, height=height, device=device, overrides=overrides)

    # cpu=None leaves a GPU server unpinned: it wants its cores for PNG encoding and the CUDA launch thread.
    service = start_server(processes, name, [sys.executable, "-m", "handlers.server"], env, scratch=scratch, cpu=cpu)
    wait_ready(service, ready_timeout)
    return service, time.monotonic() - began


# --- the server's log ---------------------------------------------------------------------------


@dataclass
class Batches:
    sizes: list[int] = field(default_factory=list)
    durations_ms: list[float] = field(default_factory=list)
    fallbacks: int = 0  # batches the pipeline failed, served with files images instead

    def extend(self, other: Batches) -> None:
        self.sizes += other.sizes
        self.durations_ms += other.durations_ms
        self.fallbacks += other.fallbacks

    @property
    def mean_size(self) -> float:
        return statistics.fmean(self.sizes) if self.sizes else 0.0

    def distribution(self) -> dict[int, int]:
        return dict(sorted(Counter(self.sizes).items()))


def settle(log_path: Path) -> int:
    """The log's length once it has stopped growing: the offset where the next round's lines begin."""
    deadline = time.monotonic() + LOG_SETTLE_MAX_S
    size = log_path.stat().st_size
    while time.monotonic() < deadline:
        time.sleep(LOG_QUIET_S)
        now = log_path.stat().st_size
        if now == size:
            break
        size = now
    return size


def read_batches(log_path: Path, start: int = 0, end: int | None = None) -> Batches:
    """`sdxl.generate` and `sdxl.fallback` lines between two byte offsets of the server's JSON log."""
    batches = Batches()
    with log_path.open("rb") as stream:
        stream.seek(start)
        chunk = stream.read() if end is None else stream.read(max(0, end - start))
    for line in chunk.splitlines():
        if b'"sdxl.' not in line:
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            record = json.loads(line)
            extra = record.get("extra", {})
            if record["message"] == "sdxl.generate":
                batches.sizes.append(int(extra["batch_size"]))
                batches.durations_ms.append(float(extra["duration_ms"]))
            elif record["message"] == "sdxl.fallback":
                batches.fallbacks += 1
    return batches


def measure_wrk(service: Server, *, connections: int, seconds: float, cpu: int) -> tuple[WrkResult, Batches]:
    """One wrk run and the batches the server ran for it."""
    start = settle(service.log_path)
    result = run_wrk(service.port, connections=connections, seconds=seconds, cpu=cpu)
    return result, read_batches(service.log_path, start, settle(service.log_path))


def format_distribution(distribution: dict[int, int]) -> str:
    return " ".join(f"{size}:{count}" for size, count in distribution.items()) or "none"
