"""The creature generator: composes a name, a rarity and an image for each call.

It is handed its sources ready-made (`core/wiring.py` builds them from the settings) and knows nothing of
HTTP, Lambda or the settings: handlers call `generate()`, `health()`, `warmup()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from core import draws
from core.creature import Creature, ImageFormat, new_creature_id, new_seed, utc_timestamp
from core.errors import GenerationFailed, ServiceUnavailable
from core.eventlog import log
from core.health import ComponentHealth, HealthStatus
from core.images.base import ImageRequest, ImageSource
from core.metrics import Metrics, NullMetrics
from core.names.base import NameSource
from core.rarity import RarityTable


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    status: HealthStatus
    time: str
    images: ComponentHealth
    names: ComponentHealth
    rate_limit: ComponentHealth | None = None  # composed by the entry point, which holds the limiter
    shared_store: ComponentHealth | None = None  # the fleet's Redis, when one is configured (same)

    @property
    def ready(self) -> bool:
        return self.status is not HealthStatus.WARMING

    def with_rate_limit(self, limiter: ComponentHealth) -> ServiceHealth:
        """This report with the rate-limit store as one more component; a degraded store degrades it."""
        return replace(self, status=self._worst_with(limiter), rate_limit=limiter)

    def with_shared_store(self, store: ComponentHealth) -> ServiceHealth:
        """This report with the shared store (`components.redis`); a degraded store degrades it."""
        return replace(self, status=self._worst_with(store), shared_store=store)

    def components(self) -> dict[str, ComponentHealth]:
        """Each component by its name in `/health` (`images`, `names`, and `rateLimit`, `redis` when present)."""
        named = {"images": self.images, "names": self.names}
        if self.rate_limit is not None:
            named["rateLimit"] = self.rate_limit
        if self.shared_store is not None:
            named[self.shared_store.backend] = self.shared_store
        return named

    def _worst_with(self, component: ComponentHealth) -> HealthStatus:
        return self.status if self.status is HealthStatus.WARMING else HealthStatus.worst(self.status, component.status)

    def to_dict(self) -> dict[str, object]:
        components: dict[str, object] = {}
        for name, part in self.components().items():
            shown: dict[str, object] = {"status": part.status.value, "detail": part.detail}
            if part is self.rate_limit:  # which store counts: memory, dynamodb or redis
                shown = {"backend": part.backend, **shown}
            components[name] = shown
        return {
            "status": self.status.value,
            "time": self.time,
            "backend": self.images.backend,
            "nameBackend": self.names.backend,
            "components": components,
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
        self._metrics = metrics or NullMetrics()
        self._started = False
        self._start_lock = asyncio.Lock()

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

    async def generate(
        self, seed: int | None = None, *, format: ImageFormat = ImageFormat.PNG, size: int | None = None
    ) -> Creature:
        """A new creature; `seed` replays one, `format` and `size` (longest edge, pixels; None: the backend's
        own) say how its image is encoded: they change the image's bytes, never the creature."""
        began = time.perf_counter()
        if not self._started:  # Lambda runs no lifespan: the first request starts the backends
            await self.start()
        reproducible = seed is not None
        seed = new_seed() if seed is None else seed
        try:
            name = await self._names.name_for(seed, reproducible=reproducible)
            rarity = self._rarity.at(draws.unit(seed, b"rarity"))
            image = await self._images.render(
                ImageRequest(seed=seed, name=name.value, rarity=rarity, format=format, size=size)
            )
        except (GenerationFailed, ServiceUnavailable):  # already what the caller is to be told
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
            name_origin=name.origin,
        )
        elapsed = time.perf_counter() - began
        self._metrics.generation(image.backend, elapsed)
        self._metrics.name_served(name.origin)
        details: dict[str, object] = {
            "id": creature.id,
            "name": creature.name,
            "rarity": creature.rarity,
            "seed": seed,
            "imageBackend": image.backend,
            "imageFormat": image.format,
            "nameSource": name.origin,
            "duration_ms": round(elapsed * 1000, 3),
        }
        if size is not None:
            details["imageSize"] = size
        if self._log_image_b64:
            details["imageBase64"] = image.base64_image.decode("ascii")
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
