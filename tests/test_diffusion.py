"""The sdxl backend on a tiny random SDXL pipeline, loaded through the real `from_pretrained` path, on CPU."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from core import wiring
from core.config import Settings, load_settings
from core.creature import EncodedImage, Rarity
from core.errors import ServiceUnavailable
from core.health import HealthStatus
from core.images.base import ImageRequest
from core.images.diffusion import DiffusionImages, DiffusionRunner, ImageJob, PipelineOptions, build_prompt
from tests.support.environment import clean_environment
from tests.support.paths import REPO, SHIPPED_IMAGES
from tests.support.server import ServerFactory, ServerProcess, start_server

SIZE = 64


def sdxl_settings(model: Path, **extra: Any) -> Settings:
    return load_settings(
        images_dir=SHIPPED_IMAGES,
        generation_backend="sdxl",
        sdxl_model=str(model),
        sdxl_width=SIZE,
        sdxl_height=SIZE,
        **extra,
    )


def sdxl_env(model: Path, **extra: str) -> dict[str, str]:
    return {
        "POKEMON_GENERATION_BACKEND": "sdxl",
        "SDXL_TURBO_MODEL": str(model),
        "SDXL_WIDTH": str(SIZE),
        "SDXL_HEIGHT": str(SIZE),
        "POKEMON_RATE_LIMIT_PER_MIN": "0",
        **extra,
    }


def pixels(encoded: str | bytes) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def max_difference(first: Image.Image, second: Image.Image) -> int:
    return max(abs(a - b) for a, b in zip(first.tobytes(), second.tobytes(), strict=True))


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def wait_until_ready(client: httpx.Client) -> None:
    wait_for(lambda: client.get("/health/ready").status_code == 200)


@pytest.fixture(scope="module")
def sdxl_server(tiny_sdxl_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_server(tmp_path_factory.mktemp("sdxl"), sdxl_env(tiny_sdxl_dir, POKEMON_BATCH_WAIT_MS="50"))
    with server.client() as client:
        wait_until_ready(client)
    yield server
    server.stop()


def test_the_prompt_comes_from_the_template() -> None:
    prompt = build_prompt("{name} the {rarity} — {rarity_look}", "Voltaran", Rarity.S_PLUS)
    assert prompt.startswith("Voltaran the S+ — a legendary")
    default = load_settings(images_dir=SHIPPED_IMAGES).prompt_template
    for trademark in ("pokemon", "pokémon", "pikachu", "nintendo"):
        assert trademark not in default.lower()


def test_generates_pngs_of_the_configured_size(sdxl_server: ServerProcess) -> None:
    with sdxl_server.client() as client:
        body = client.get("/v1/generate", params={"seed": 5}).json()
        health = client.get("/health").json()
    assert body["metadata"]["imageSource"] == "sdxl"
    assert body["metadata"]["seed"] == 5
    image = pixels(body["imageBase64"])
    assert image.format == "PNG" and image.size == (SIZE, SIZE)
    assert health["status"] == "ok" and health["backend"] == "sdxl"


def test_a_seed_gives_the_same_image_whatever_batch_it_rides_in(sdxl_server: ServerProcess) -> None:
    seeds = list(range(100, 108))
    with sdxl_server.client() as client:
        alone = {seed: client.get("/v1/generate", params={"seed": seed}).json()["imageBase64"] for seed in seeds}

        def fetch(seed: int) -> tuple[int, str]:
            with sdxl_server.client() as own:
                return seed, own.get("/v1/generate", params={"seed": seed}).json()["imageBase64"]

        with ThreadPoolExecutor(len(seeds)) as pool:
            together = dict(pool.map(fetch, reversed(seeds)))
    for seed in seeds:
        assert max_difference(pixels(alone[seed]), pixels(together[seed])) <= 2
    assert len({alone[seed] for seed in seeds}) == len(seeds)

    def batch_sizes() -> list[int]:
        lines = sdxl_server.log_lines()
        return [json.loads(line)["extra"]["batch_size"] for line in lines if '"sdxl.generate"' in line]

    # The concurrent requests really shared pipeline calls (log lines reach the file within ~50 ms).
    wait_for(lambda: max(batch_sizes()) > 1, timeout=5.0)


def test_health_answers_while_the_pipeline_works(sdxl_server: ServerProcess) -> None:
    def generate(seed: int) -> int:
        with sdxl_server.client() as own:
            return own.get("/v1/generate", params={"seed": seed}).status_code

    with ThreadPoolExecutor(8) as pool, sdxl_server.client() as client:
        pending = [pool.submit(generate, seed) for seed in range(16)]
        assert client.get("/health", timeout=2.0).status_code == 200
        assert {future.result() for future in pending} == {200}


def test_a_full_queue_answers_503_at_once(tiny_sdxl_dir: Path, server_factory: ServerFactory) -> None:
    server = server_factory(sdxl_env(tiny_sdxl_dir, POKEMON_QUEUE_SIZE="1", POKEMON_MAX_BATCH="1"))

    def generate(seed: int) -> httpx.Response:
        with server.client() as own:
            return own.get("/v1/generate", params={"seed": seed})

    with server.client() as client:
        wait_until_ready(client)
    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(generate, range(48)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 503}, statuses
    refused = next(response for response in responses if response.status_code == 503)
    assert refused.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert int(refused.headers["retry-after"]) >= 1


def test_a_model_that_does_not_load_leaves_files_serving(tmp_path: Path, server_factory: ServerFactory) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text("{not json")
    server = server_factory(sdxl_env(broken))
    with server.client() as client:
        wait_for(lambda: client.get("/health").json()["status"] != "warming")
        health = client.get("/health").json()
        body = client.get("/v1/generate").json()
        ready = client.get("/health/ready")
    assert health["status"] == "degraded"
    assert "failed to load" in health["components"]["images"]["detail"]
    assert body["metadata"]["imageSource"] == "files"
    assert ready.status_code == 200
    server.stop()
    failures = [json.loads(line) for line in server.log_lines() if '"sdxl.load.failed"' in line]
    assert len(failures) == 1 and failures[0]["level"] == "ERROR"
    assert "Traceback" not in server.log_path.read_text()


class FlakyRunner:
    """The real runner, failing on chosen calls as a GPU out of memory would."""

    def __init__(self, pipeline: Any, options: PipelineOptions) -> None:
        self.inner = DiffusionRunner(pipeline, options)
        self.calls = 0
        self.fail_on = {2}

    def __call__(self, jobs: Sequence[ImageJob]) -> list[EncodedImage]:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("CUDA out of memory")
        return self.inner(jobs)


def test_a_failed_call_falls_back_for_that_request_only(tiny_sdxl_dir: Path) -> None:
    settings = sdxl_settings(tiny_sdxl_dir)
    images = DiffusionImages(
        wiring.pipeline_options(settings),
        wiring.build_files_images(settings),
        prompt_template=settings.prompt_template,
        runner_factory=FlakyRunner,
    )

    async def scenario() -> list[str]:
        await images.warmup()  # call 1
        sources = []
        for seed in range(3):  # calls 2 (fails), 3, 4
            image = await images.render(ImageRequest(seed=seed, name="Voltaran", rarity=Rarity.B))
            sources.append(image.backend)
        await images.aclose()
        return sources

    assert asyncio.run(scenario()) == ["files", "sdxl", "sdxl"]


def test_requests_during_warm_up_are_told_to_retry(tiny_sdxl_dir: Path) -> None:
    settings = sdxl_settings(tiny_sdxl_dir)
    release = asyncio.Event()

    async def scenario() -> None:
        from core.images.diffusion import load_pipeline

        loop = asyncio.get_running_loop()

        def loader(current: PipelineOptions) -> Any:
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(timeout=30)
            return load_pipeline(current)

        images = DiffusionImages(
            wiring.pipeline_options(settings),
            wiring.build_files_images(settings),
            prompt_template=settings.prompt_template,
            loader=loader,
        )
        await images.start()
        assert images.health().status is HealthStatus.WARMING
        with pytest.raises(ServiceUnavailable) as caught:
            await images.render(ImageRequest(seed=1, name="Voltaran", rarity=Rarity.F))
        assert caught.value.retry_after >= 1
        release.set()
        await images.warmup()
        assert images.health().status is HealthStatus.OK
        await images.aclose()

    asyncio.run(scenario())


def test_the_files_backend_never_imports_torch() -> None:
    script = textwrap.dedent(
        """
        import asyncio, io, sys
        import httpx
        from core.eventlog import configure_logging
        configure_logging(stream=io.StringIO(), background=False)
        from handlers.api import create_app
        app = create_app()
        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/v1/generate")).status_code == 200
        asyncio.run(main())
        print(sorted(name for name in ("torch", "diffusers", "transformers") if name in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=clean_environment(POKEMON_IMAGES_DIR=str(SHIPPED_IMAGES)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"
