"""The composition root: the one place in `core` that reads `Settings` and builds what they ask for.

Every source, store and check below takes plain arguments; this module turns settings into those
arguments, chooses each backend once, and hands the entry points a `Components` they serve with. Heavy
libraries are imported only by the builder of the backend that needs them (boto3 for a DynamoDB table,
httpx for remote names, torch and diffusers for the diffusion backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.auth import BearerAuth
from core.clientaddr import ClientAddressResolver
from core.config import Settings
from core.errors import ConfigError, ImageFolderError
from core.eventlog import log
from core.images.base import ImageSource
from core.images.files import FilesImages
from core.metrics import Metrics, NullMetrics
from core.names.base import NameSource
from core.names.local import LocalNames
from core.rarity import RarityTable
from core.ratelimit import MemoryRateLimiter, RateLimiter, TokenBucket
from core.ratelimit.authfailures import AuthFailureGuard
from core.service import CreatureService

if TYPE_CHECKING:
    from core.breaker import BreakerState
    from core.images.diffusion import PipelineOptions
    from core.names.shared import SharedNamePool
    from core.sharedstore import SharedStore


@dataclass(frozen=True, slots=True)
class Components:
    """Everything an entry point serves with, built once from one `Settings`."""

    settings: Settings
    service: CreatureService
    auth: BearerAuth
    limiter: RateLimiter | None
    client_addresses: ClientAddressResolver
    auth_failures: AuthFailureGuard | None
    metrics: Metrics
    shared_store: SharedStore | None = None

    async def aclose(self) -> None:
        """Release what the components hold beyond the service (which the entry point closes itself)."""
        if self.shared_store is not None:
            await self.shared_store.aclose()


def build(settings: Settings, *, metrics: Metrics | None = None, service: CreatureService | None = None) -> Components:
    """Build and check every backend; a bad setting or image raises `ConfigError`.

    `service` stands in for the one the settings describe (tests hand in one built from their own parts).
    """
    sink = metrics or NullMetrics()
    shared = build_shared_store(settings)
    return Components(
        settings=settings,
        service=service or build_service(settings, metrics=sink, shared=shared),
        auth=BearerAuth(settings.bearer_token),
        limiter=build_rate_limiter(settings, shared=shared),
        client_addresses=ClientAddressResolver(
            settings.trusted_proxies, header=settings.proxy_header, ipv6_prefix=settings.rate_limit_ipv6_prefix
        ),
        metrics=sink,
        auth_failures=build_auth_failure_guard(settings, shared=shared),
        shared_store=shared,
    )


# --- Shared state ---


def build_shared_store(settings: Settings) -> SharedStore | None:
    """The fleet's Redis when `POKEMON_REDIS_URL` names one: one client, pool and breaker for the process.

    Nothing is sent until the first request needs it: an unreachable Redis never stops a start-up (the
    service serves without it, degraded, and picks it up when it answers)."""
    if settings.redis_url is None:
        return None
    from core.sharedstore import SharedStore  # redis-py only when a store is configured

    return SharedStore.from_url(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_prefix,
        timeout=settings.redis_timeout_ms / 1000,
        max_connections=settings.redis_max_connections,
        breaker_failures=settings.redis_breaker_failures,
        breaker_cooldown=settings.redis_breaker_cooldown,
    )


def build_service(
    settings: Settings, *, metrics: Metrics | None = None, shared: SharedStore | None = None
) -> CreatureService:
    sink = metrics or NullMetrics()
    return CreatureService(
        names=build_name_source(settings, shared=shared),
        images=build_image_source(settings, metrics=sink),
        rarity=RarityTable(settings.rarity_weights),
        log_image_b64=settings.log_image_b64,
        metrics=sink,
    )


# --- Names ---


def build_name_source(settings: Settings, *, shared: SharedStore | None = None) -> NameSource:
    if settings.name_backend == "local":
        return LocalNames()
    # Imported here only: httpx, the pool and the breaker cost a local-names start-up (a Lambda cold start) nothing.
    from core.breaker import CircuitBreaker
    from core.names.openai_client import OpenAINameClient
    from core.names.remote import RemoteNames

    client = OpenAINameClient(
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        api_key=settings.openai_api_key,
        timeout=settings.openai_timeout,
        max_tokens=settings.openai_max_tokens,
        temperature=settings.openai_temperature,
        language=settings.name_language,
        log_content=settings.log_remote_content,
        max_response_bytes=settings.openai_max_response_bytes,
    )
    breaker = CircuitBreaker(
        failure_threshold=settings.name_breaker_failures,
        cooldown=settings.name_breaker_cooldown,
        on_change=_log_name_breaker,
    )
    pool: SharedNamePool | None = None
    if shared is not None:
        from core.names.shared import SharedNamePool

        pool = SharedNamePool(
            shared,
            target=settings.name_pool_size,
            ttl=settings.name_cache_ttl,
            lease_slots=settings.name_concurrency,
            lease_seconds=settings.openai_timeout + 1.0,  # a lease outlives the model call it covers
        )
    return RemoteNames(
        client,
        breaker=breaker,
        pool_size=settings.name_pool_size,
        concurrency=settings.name_concurrency,
        wait=settings.name_wait_ms / 1000,
        shared=pool,
    )


def _log_name_breaker(previous: BreakerState, current: BreakerState) -> None:
    log.warning("remote_name.breaker", previous=previous, state=current)


# --- Images ---


def build_files_images(settings: Settings) -> FilesImages:
    file_names = [settings.image_pattern.format(index) for index in range(settings.min_index, settings.max_index + 1)]
    try:
        return FilesImages.from_folder(settings.images_dir, file_names)
    except ImageFolderError as exc:
        raise ConfigError("POKEMON_IMAGES_DIR", exc.folder, exc.reason) from None


def build_image_source(settings: Settings, *, metrics: Metrics | None = None) -> ImageSource:
    files = build_files_images(settings)  # checked even for sdxl: it is the fallback
    if settings.generation_backend == "files":
        return files
    check_image_size(settings)
    # Imported here only: torch and diffusers must cost nothing unless this backend is chosen.
    from core.images.diffusion import BatchOptions, DiffusionImages

    return DiffusionImages(
        pipeline_options(settings),
        files,
        prompt_template=settings.prompt_template,
        batching=BatchOptions(
            max_batch=settings.max_batch, max_wait=settings.batch_wait_ms / 1000, queue_size=settings.queue_size
        ),
        metrics=metrics,
    )


def pipeline_options(settings: Settings) -> PipelineOptions:
    from core.images.diffusion import PipelineOptions

    return PipelineOptions(
        model=settings.sdxl_model,
        width=settings.sdxl_width,
        height=settings.sdxl_height,
        steps=settings.sdxl_steps,
        guidance_scale=settings.sdxl_guidance_scale,
        device=settings.sdxl_device,
        dtype=settings.sdxl_dtype,
        attention_slicing=settings.sdxl_attention_slicing,
        vae=settings.sdxl_vae,
        vae_upcast=settings.sdxl_vae_upcast,
        compile=settings.sdxl_compile,
    )


def check_image_size(settings: Settings) -> None:
    """Refuses a width or height the model's family cannot draw, before anything loads.

    The model's `model_index.json` names its pipeline class: read from the folder, or for a hub id from the
    local Hugging Face cache (never downloaded here). When it is in neither, the loader checks the same rule
    once it has the file, and a refusal there leaves files serving with one `sdxl.load.failed` line.
    """
    from core.images.families import model_reader, model_shape

    shape = model_shape(model_reader(settings.sdxl_model))
    if shape is None:
        return
    for field, side in (("sdxl_width", settings.sdxl_width), ("sdxl_height", settings.sdxl_height)):
        problem = shape.size_problem(side)
        if problem is not None:
            raise ConfigError(settings.variable_for(field), side, problem)


# --- Rate limit ---


def build_rate_limiter(settings: Settings, *, shared: SharedStore | None = None) -> RateLimiter | None:
    """None when off; this process's memory by default; shared by all instances in a DynamoDB table when one
    is named, else in Redis when one is configured."""
    if not settings.rate_limit_enabled:
        return None
    return _limiter(settings, TokenBucket.per_minute(settings.rate_limit_per_min), shared)


def build_auth_failure_guard(settings: Settings, *, shared: SharedStore | None = None) -> AuthFailureGuard | None:
    """None when auth or the budget is off; else failed attempts counted in the rate limit's store (its own
    limiter: the guard's keys are `auth:<client>`, so a shared table keeps both apart)."""
    if settings.bearer_token is None or settings.auth_failures_per_min == 0:
        return None
    limiter = _limiter(settings, TokenBucket.per_minute(settings.auth_failures_per_min), shared)
    return AuthFailureGuard(
        limiter, per_minute=settings.auth_failures_per_min, max_clients=settings.rate_limit_max_clients
    )


def _limiter(settings: Settings, bucket: TokenBucket, shared: SharedStore | None) -> RateLimiter:
    if settings.rate_limit_table:
        from core.ratelimit.dynamodb import DynamoDBRateLimiter  # boto3 only when a table is configured

        return DynamoDBRateLimiter(
            settings.rate_limit_table,
            bucket,
            fail_open=settings.rate_limit_fail_open,
            breaker_failures=settings.rate_limit_breaker_failures,
            breaker_cooldown=settings.rate_limit_breaker_cooldown,
            max_cached_keys=settings.rate_limit_max_clients,  # the bound the in-memory limiter has
        )
    if shared is not None:
        from core.ratelimit.redis import RedisRateLimiter

        return RedisRateLimiter(
            shared,
            bucket,
            fail_open=settings.rate_limit_fail_open,
            max_local_buckets=settings.rate_limit_max_clients,  # the fail-open fallback's bound
        )
    return MemoryRateLimiter(bucket, max_buckets=settings.rate_limit_max_clients)
