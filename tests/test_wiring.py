"""The composition root, setting by setting: each value `core.wiring` hands on is seen where it lands.

Parsing is tested in test_config.py; here a setting counts only when its effect shows outside the code that
read it: in the requests the fake name server received, in the calls the diffusion pipeline received, in
which clients the rate limiter admits, or in a server process started with the environment variable.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core import wiring
from core.config import Settings, load_settings
from core.creature import NameOrigin, Rarity
from core.health import HealthStatus
from core.images.base import ImageRequest
from core.images.diffusion import RARITY_LOOKS
from core.names.base import NameSource
from core.names.prompts import PROMPTS, Language
from tests.support.ports import free_port

if TYPE_CHECKING:
    from tests.support.fake_llm import FakeLLM
    from tests.support.server import ServerFactory


async def eventually(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"waited {limit} s for {what}"
        await asyncio.sleep(0.01)


def remote_settings(llm: FakeLLM, **overrides: Any) -> Settings:
    return load_settings(name_backend="remote", openai_base_url=llm.base_url, **overrides)


async def first_name(source: NameSource) -> tuple[NameOrigin, str]:
    """Starts the pool and takes one unseeded name (waiting for the model as long as the settings say)."""
    await source.start()
    name = await source.name_for(1)
    return name.origin, name.value


async def until_the_breaker_opens(source: NameSource, limit: float = 10.0) -> None:
    """Starts the pool and waits until its breaker has opened (`/health` degraded), then stops it."""
    await source.start()
    try:
        await eventually(lambda: source.health().status is HealthStatus.DEGRADED, "the breaker open", limit=limit)
    finally:
        await source.aclose()


# --- Names: what the model server receives ---


@pytest.mark.parametrize("language", list(PROMPTS))
def test_the_name_request_carries_the_configured_model_limits_language_and_key(
    llm: FakeLLM, language: Language
) -> None:
    llm.set("clean", names=["Wiredling"])
    # Every value differs from its default, so a setting that is dropped on the way shows.
    settings = remote_settings(
        llm,
        openai_model="wired-model:3b",
        openai_max_tokens=17,
        openai_temperature=0.25,
        openai_api_key="sk-wired",
        name_language=language,
        name_wait_ms=10_000,
    )
    source = wiring.build_name_source(settings)

    async def scenario() -> tuple[NameOrigin, str]:
        try:
            return await first_name(source)
        finally:
            await source.aclose()

    assert asyncio.run(scenario()) == (NameOrigin.REMOTE, "Wiredling")
    request = llm.requests()[0]
    body = request["body"]
    assert request["headers"]["authorization"] == "Bearer sk-wired"
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("wired-model:3b", 17, 0.25)
    system, user = body["messages"]
    assert system == {"role": "system", "content": PROMPTS[language].system}
    assert user["content"].startswith(PROMPTS[language].user.split("{theme}")[0])


def test_a_server_process_sends_what_the_openai_variables_say(llm: FakeLLM, server_factory: ServerFactory) -> None:
    llm.set("clean", names=["Procesito"])
    server = server_factory(
        {
            "POKEMON_NAME_BACKEND": "remote",
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_MODEL": "env-model:1b",
            "OPENAI_MAX_TOKENS": "21",
            "OPENAI_TEMPERATURE": "1.3",
            "OPENAI_API_KEY": "sk-from-env",
            "POKEMON_NAME_LANGUAGE": "es",
            "POKEMON_NAME_WAIT_MS": "10000",
            "POKEMON_RATE_LIMIT_PER_MIN": "0",
        }
    )
    with server.client() as client:
        metadata = client.get("/v1/generate").json()["metadata"]
    assert (metadata["nameSource"], metadata["name"]) == ("remote", "Procesito")
    request = llm.requests()[0]
    body = request["body"]
    assert request["headers"]["authorization"] == "Bearer sk-from-env"
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("env-model:1b", 21, 1.3)
    assert body["messages"][0]["content"] == PROMPTS["es"].system


# --- Names: the pool around the client ---


def test_the_pool_fetches_exactly_its_size_ahead(llm: FakeLLM) -> None:
    source = wiring.build_name_source(remote_settings(llm, name_pool_size=3, name_concurrency=1))

    async def scenario() -> None:
        await source.start()
        try:
            await eventually(lambda: llm.stats()["chat_requests"] >= 3, "three name requests")
            # A pool that ignored its size would keep asking; the fake answers at once, so a moment shows it.
            await asyncio.sleep(0.3)
        finally:
            await source.aclose()

    asyncio.run(scenario())
    assert llm.stats()["chat_requests"] == 3


def test_name_requests_in_flight_reach_the_configured_concurrency_and_no_more(llm: FakeLLM) -> None:
    llm.set("clean", delay_ms=300)
    source = wiring.build_name_source(remote_settings(llm, name_pool_size=12, name_concurrency=3))

    async def scenario() -> None:
        await source.start()
        try:
            await eventually(lambda: llm.stats()["in_flight"] >= 3, "three requests in flight")
            await eventually(lambda: llm.stats()["chat_requests"] >= 7, "later waves")
        finally:
            await source.aclose()

    asyncio.run(scenario())
    assert llm.stats()["max_in_flight"] == 3


def test_a_request_waits_for_the_first_name_as_long_as_configured(llm: FakeLLM) -> None:
    llm.set("clean", names=["Patientia"], delay_ms=400)  # far beyond the 50 ms default wait
    source = wiring.build_name_source(remote_settings(llm, name_wait_ms=5_000))

    async def scenario() -> tuple[NameOrigin, str]:
        try:
            return await first_name(source)
        finally:
            await source.aclose()

    assert asyncio.run(scenario()) == (NameOrigin.REMOTE, "Patientia")


def test_the_breaker_opens_after_the_configured_failures(llm: FakeLLM) -> None:
    llm.set("status", status=500)
    settings = remote_settings(llm, name_breaker_failures=1, name_concurrency=1)
    source = wiring.build_name_source(settings)

    asyncio.run(until_the_breaker_opens(source))
    assert llm.stats()["chat_requests"] == 1  # one failure opened it; the cool-down (30 s) sends no probe yet


def test_a_name_request_is_abandoned_after_the_configured_timeout(llm: FakeLLM) -> None:
    llm.set("hang")
    settings = remote_settings(llm, openai_timeout=0.2, name_breaker_failures=1, name_concurrency=1)
    source = wiring.build_name_source(settings)

    # The one hanging request must fail for the breaker to open: well before the 5 s default could.
    asyncio.run(until_the_breaker_opens(source, limit=2.5))
    assert llm.stats()["chat_requests"] == 1


def test_an_answer_past_the_configured_cap_is_refused(llm: FakeLLM) -> None:
    llm.set("huge", size=4096)
    settings = remote_settings(llm, openai_max_response_bytes=2048, name_breaker_failures=1, name_concurrency=1)
    source = wiring.build_name_source(settings)

    asyncio.run(until_the_breaker_opens(source))
    assert llm.stats()["chat_requests"] == 1
    # The same answer is a name under the default cap.
    default = wiring.build_name_source(remote_settings(llm, name_wait_ms=10_000))

    async def under_the_default() -> tuple[NameOrigin, str]:
        try:
            return await first_name(default)
        finally:
            await default.aclose()

    assert asyncio.run(under_the_default()) == (NameOrigin.REMOTE, "Aquaclaw")


# --- Rate limit ---


def admissions(settings: Settings, keys: list[str]) -> list[bool]:
    limiter = wiring.build_rate_limiter(settings)
    assert limiter is not None

    async def run() -> list[bool]:
        return [(await limiter.acquire(key)).allowed for key in keys]

    return asyncio.run(run())


@pytest.mark.parametrize(("max_clients", "a_again"), [(2, True), (1000, False)])
def test_max_clients_bounds_the_buckets_kept(max_clients: int, a_again: bool) -> None:
    settings = load_settings(rate_limit_per_min=1, rate_limit_max_clients=max_clients)
    # A spends its only token; B and C push its bucket out when only two are kept, and A starts afresh.
    assert admissions(settings, ["a", "b", "c", "a"]) == [True, True, True, a_again]


def test_max_clients_in_a_server_process(server_factory: ServerFactory) -> None:
    server = server_factory(
        {
            "POKEMON_RATE_LIMIT_PER_MIN": "1",
            "POKEMON_RATE_LIMIT_MAX_CLIENTS": "2",
            "POKEMON_TRUSTED_PROXIES": "127.0.0.1/32",
        }
    )
    with server.client() as client:
        statuses = [
            client.get("/v1/generate", headers={"X-Forwarded-For": address}).status_code
            for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.1", "203.0.113.1")
        ]
    # The first client is admitted again once two others pushed its bucket out, then refused from its new one.
    assert statuses == [200, 200, 200, 200, 429]


@pytest.fixture
def unreachable_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AWS settings for boto3 pointing at a loopback port where nothing listens."""
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{free_port()}",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    yield


@pytest.mark.usefixtures("unreachable_dynamodb")
@pytest.mark.parametrize("fail_open", [True, False])
def test_an_unreachable_table_admits_or_refuses_as_configured(fail_open: bool) -> None:
    settings = load_settings(rate_limit_table="rate-limits", rate_limit_per_min=5, rate_limit_fail_open=fail_open)
    limiter = wiring.build_rate_limiter(settings)
    assert limiter is not None
    try:
        decision = asyncio.run(limiter.acquire("client"))
    finally:
        close = getattr(limiter, "close", None)
        if close is not None:
            close()
    assert decision.allowed is fail_open


# --- Images from the diffusion pipeline: what the pipeline is called with ---


@dataclass(frozen=True)
class PipelineCall:
    prompts: list[str]
    steps: int
    guidance_scale: float
    width: int
    height: int


@pytest.fixture
def pipeline_calls(monkeypatch: pytest.MonkeyPatch) -> list[PipelineCall]:
    """Every call of the SDXL pipeline class, recorded on its way to the real one."""
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

    original = StableDiffusionXLPipeline.__call__
    signature = inspect.signature(original)
    calls: list[PipelineCall] = []

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        prompt = arguments["prompt"]
        calls.append(
            PipelineCall(
                prompts=[prompt] if isinstance(prompt, str) else list(prompt),
                steps=arguments["num_inference_steps"],
                guidance_scale=arguments["guidance_scale"],
                width=arguments["width"],
                height=arguments["height"],
            )
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "__call__", recording)
    return calls


def sdxl_settings(model: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {"sdxl_width": 64, "sdxl_height": 64, **overrides}
    return load_settings(generation_backend="sdxl", sdxl_model=str(model), **options)


async def render_all(settings: Settings, requests: list[ImageRequest], *, gap: float = 0.0) -> list[tuple[int, int]]:
    """Warms the source wiring builds, renders `requests` concurrently (`gap` seconds apart), returns the sizes."""
    images = wiring.build_image_source(settings)
    try:
        await images.warmup()
        tasks = []
        for request in requests:
            tasks.append(asyncio.create_task(images.render(request)))
            await asyncio.sleep(gap)
        rendered = await asyncio.gather(*tasks)
    finally:
        await images.aclose()
    assert {image.backend for image in rendered} == {"sdxl"}
    return [(image.width, image.height) for image in rendered]


def test_the_pipeline_gets_the_configured_prompt_size_steps_and_guidance(
    tiny_sdxl_dir: Path, pipeline_calls: list[PipelineCall]
) -> None:
    settings = sdxl_settings(
        tiny_sdxl_dir,
        prompt_template="{name} of tier {rarity}, {rarity_look}",
        sdxl_width=64,
        sdxl_height=80,
        sdxl_steps=2,
        sdxl_guidance_scale=1.5,
    )
    sizes = asyncio.run(render_all(settings, [ImageRequest(seed=3, name="Voltaran", rarity=Rarity.S_PLUS)]))
    assert sizes == [(64, 80)]
    warm_up, call = pipeline_calls
    assert call.prompts == [f"Voltaran of tier S+, {RARITY_LOOKS[Rarity.S_PLUS]}"]
    for made in (warm_up, call):
        assert (made.width, made.height, made.steps, made.guidance_scale) == (64, 80, 2, 1.5)


def test_max_batch_caps_the_requests_in_one_call(tiny_sdxl_dir: Path, pipeline_calls: list[PipelineCall]) -> None:
    settings = sdxl_settings(tiny_sdxl_dir, max_batch=2)
    requests = [ImageRequest(seed=seed, name="Voltaran", rarity=Rarity.F) for seed in range(5)]
    asyncio.run(render_all(settings, requests))
    # All five are queued before the first call; with the default of 8 they would share one.
    assert [len(call.prompts) for call in pipeline_calls[1:]] == [2, 2, 1]


def test_batch_wait_keeps_a_call_open_for_company(tiny_sdxl_dir: Path, pipeline_calls: list[PipelineCall]) -> None:
    settings = sdxl_settings(tiny_sdxl_dir, max_batch=2, batch_wait_ms=5_000)
    requests = [ImageRequest(seed=seed, name="Voltaran", rarity=Rarity.F) for seed in range(2)]
    # The second request comes 0.3 s after the first: far inside the 5 s wait, far outside the 10 ms default.
    asyncio.run(render_all(settings, requests, gap=0.3))
    assert [len(call.prompts) for call in pipeline_calls[1:]] == [2]


def test_an_unavailable_device_leaves_files_serving(tiny_sdxl_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has the device: the setting would load, not fail")
    settings = sdxl_settings(tiny_sdxl_dir, sdxl_device="cuda")

    async def scenario() -> tuple[HealthStatus, str]:
        images = wiring.build_image_source(settings)
        try:
            await images.warmup()
            image = await images.render(ImageRequest(seed=1, name="Voltaran", rarity=Rarity.F))
            return images.health().status, image.backend
        finally:
            await images.aclose()

    assert asyncio.run(scenario()) == (HealthStatus.DEGRADED, "files")
