"""The creature generator: composes a name, a rarity and an image for each call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from core import streams
from core.breaker import BreakerState, CircuitBreaker
from core.config import Settings
from core.creature import Creature, new_creature_id, new_seed, utc_timestamp
from core.errors import GenerationFailed, ServiceUnavailable
from core.health import ComponentHealth, HealthStatus
from core.images.base import ImageRequest, ImageSource
from core.images.files import FilesImages
from core.metrics import Metrics
from core.metrics import metrics as current_metrics
from core.names.base import NameSource
from core.names.client import OpenAINameClient
from core.names.embedded import LocalNames
from core.names.remote import RemoteNames
from core.rarity import RarityTable
from core.telemetry import log


def _log_breaker(previous: BreakerState, current: BreakerState) -> None:
    log.warning("remote_name.breaker", previous=previous, state=current)


def build_name_source(settings: Settings) -> NameSource:
    if settings.name_backend == "local":
        return LocalNames()
    client = OpenAINameClient(
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        api_key=settings.openai_api_key,
        timeout=settings.openai_timeout,
        max_tokens=settings.openai_max_tokens,
        temperature=settings.openai_temperature,
        language=settings.name_language,
        log_content=settings.log_remote_content,
    )
    breaker = CircuitBreaker(
        failure_threshold=settings.name_breaker_failures,
        cooldown=settings.name_breaker_cooldown,
        on_change=_log_breaker,
    )
    return RemoteNames(
        client,
        breaker=breaker,
        pool_size=settings.name_pool_size,
        concurrency=settings.name_concurrency,
        wait=settings.name_wait_ms / 1000,
    )


def build_image_source(settings: Settings) -> ImageSource:
    files = FilesImages.from_settings(settings)  # checked even for sdxl: it is the fallback
    if settings.generation_backend == "files":
        return files
    # Imported here only: torch and diffusers must cost nothing unless this backend is chosen.
    from core.images.diffusion import DiffusionImages

    return DiffusionImages(settings, files)


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    status: HealthStatus
    time: str
    images: ComponentHealth
    names: ComponentHealth

    @property
    def ready(self) -> bool:
        return self.status is not HealthStatus.WARMING

    def to_dict(self) -> dict[str, object]:
        return {
            "status": self.status.value,
            "time": self.time,
            "backend": self.images.backend,
            "nameBackend": self.names.backend,
            "components": {
                "images": {"status": self.images.status.value, "detail": self.images.detail},
                "names": {"status": self.names.status.value, "detail": self.names.detail},
            },
        }


class CreatureService:
    """Every backend is chosen once, when the service is built; callers only see this class."""

    def __init__(
        self,
        *,
        names: NameSource,
        images: ImageSource,
        rarity: RarityTable,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = new_creature_id,
        log_image_b64: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._names = names
        self._images = images
        self._rarity = rarity
        self._clock = clock
        self._new_id = new_id
        self._log_image_b64 = log_image_b64
        self._metrics = metrics or current_metrics()
        self._started = False
        self._start_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> CreatureService:
        """Build and check every backend; a bad setting or image raises `ConfigError`."""
        return cls(
            names=build_name_source(settings),
            images=build_image_source(settings),
            rarity=RarityTable(settings.rarity_weights),
            log_image_b64=settings.log_image_b64,
        )

    @property
    def image_backend(self) -> str:
        return self._images.backend

    @property
    def name_backend(self) -> str:
        return self._names.backend

    async def start(self) -> None:
        """Start the backends once; safe to call concurrently and repeatedly."""
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            await self._names.start()
            await self._images.start()
            self._started = True

    async def warmup(self) -> dict[str, object]:
        """Start everything and wait until the image backend is warm; a summary for the caller."""
        began = time.perf_counter()
        await self.start()
        await self._images.warmup()
        return {
            "warmed": True,
            "durationMs": round((time.perf_counter() - began) * 1000, 1),
            **self.health().to_dict(),
        }

    async def generate(self, seed: int | None = None) -> Creature:
        began = time.perf_counter()
        if not self._started:  # Lambda runs no lifespan: the first request starts the backends
            await self.start()
        reproducible = seed is not None
        seed = new_seed() if seed is None else seed
        try:
            name = await self._names.name_for(seed, reproducible=reproducible)
            rarity = self._rarity.at(streams.unit(seed, b"rarity"))
            image = await self._images.render(ImageRequest(seed=seed, name=name.value, rarity=rarity))
        except (GenerationFailed, ServiceUnavailable):
            raise
        except Exception as exc:
            log.error("generate.failed", seed=seed, error=type(exc).__name__)
            raise GenerationFailed("the creature could not be generated") from exc
        creature = Creature(
            id=self._new_id(),
            name=name.value,
            rarity=rarity,
            image=image,
            generated_at=utc_timestamp(self._clock()),
            seed=seed,
            name_source=name.source,
        )
        elapsed = time.perf_counter() - began
        self._metrics.generation(image.source, elapsed)
        self._metrics.name_served(name.source)
        details: dict[str, object] = {
            "id": creature.id,
            "name": creature.name,
            "rarity": creature.rarity,
            "seed": seed,
            "imageBackend": image.source,
            "nameSource": name.source,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if self._log_image_b64:
            details["imageBase64"] = image.base64_png.decode("ascii")
        log.info("generate.success", **details)
        return creature

    def queue_depth(self) -> int:
        return self._images.queue_depth()

    def health(self) -> ServiceHealth:
        images, names = self._images.health(), self._names.health()
        status = HealthStatus.worst(images.status, names.status)
        if not self._started:
            status = HealthStatus.WARMING
        return ServiceHealth(status=status, time=utc_timestamp(self._clock()), images=images, names=names)

    async def aclose(self) -> None:
        await self._names.aclose()
        await self._images.aclose()
