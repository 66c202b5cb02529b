"""The generator composes names, rarity and images; a seed reproduces a creature."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from core import wiring
from core.config import load_settings
from core.creature import EncodedImage, NameOrigin, Rarity
from core.errors import ConfigError, GenerationFailed
from core.health import ComponentHealth, HealthStatus
from core.images.base import ImageRequest
from core.names.generator import NAME_PATTERN
from core.names.local import LocalNames
from core.rarity import RarityTable
from core.service import CreatureService
from tests.support.paths import SHIPPED_IMAGES


def build(**overrides: object) -> CreatureService:
    return wiring.build_service(load_settings(images_dir=SHIPPED_IMAGES, **overrides))


def test_a_seed_reproduces_name_rarity_and_image() -> None:
    service = build()
    first = asyncio.run(service.generate(42))
    second = asyncio.run(service.generate(42))
    assert (first.name, first.rarity, first.image, first.seed) == (second.name, second.rarity, second.image, 42)
    assert first.id != second.id  # every call is a new creature, even when it looks the same


def test_without_a_seed_one_is_drawn_and_returned() -> None:
    service = build()
    creatures = [asyncio.run(service.generate()) for _ in range(20)]
    seeds = {creature.seed for creature in creatures}
    assert len(seeds) == 20
    replay = asyncio.run(service.generate(creatures[0].seed))
    assert (replay.name, replay.rarity, replay.image) == (creatures[0].name, creatures[0].rarity, creatures[0].image)


def test_creatures_look_like_the_contract() -> None:
    creature = asyncio.run(build().generate(7))
    assert re.fullmatch(r"pkm_[A-Z0-9]{12}", creature.id)
    assert NAME_PATTERN.fullmatch(creature.name)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", creature.generated_at)
    assert creature.name_origin is NameOrigin.LOCAL


def test_rarity_weights_setting_is_used() -> None:
    only_s_plus = "F=0,E=0,D=0,C=0,B=0,A=0,S=0,S+=1"
    service = build(rarity_weights=only_s_plus)
    assert {asyncio.run(service.generate(seed)).rarity.value for seed in range(30)} == {"S+"}


def test_health_reports_backends_and_warming_until_started() -> None:
    service = build()
    assert service.health().status is HealthStatus.WARMING
    asyncio.run(service.start())
    health = service.health().to_dict()
    assert health["status"] == "ok"
    assert health["backend"] == "files"
    assert health["nameBackend"] == "local"


def test_the_sdxl_backend_still_checks_its_fallback_images(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="POKEMON_IMAGES_DIR"):
        wiring.build_service(load_settings(images_dir=tmp_path / "nope", generation_backend="sdxl"))


def test_the_remote_name_backend_is_built_from_settings() -> None:
    service = build(name_backend="remote", openai_base_url="http://127.0.0.1:9/v1")
    assert service.name_backend == "remote"
    asyncio.run(service.aclose())


class BrokenImages:
    backend = "broken"

    async def start(self) -> None:
        return None

    async def warmup(self) -> None:
        return None

    async def render(self, request: ImageRequest) -> EncodedImage:
        raise RuntimeError("/secret/path/model.bin exploded")

    def health(self) -> ComponentHealth:
        return ComponentHealth(self.backend)

    def queue_depth(self) -> int:
        return 0

    async def aclose(self) -> None:
        return None


def test_a_failing_backend_becomes_generation_failed() -> None:
    service = CreatureService(names=LocalNames(), images=BrokenImages(), rarity=RarityTable({Rarity.F: 1.0}))
    with pytest.raises(GenerationFailed) as caught:
        asyncio.run(service.generate(1))
    assert "/secret/path" not in str(caught.value)
