"""Weighted rarity draw, F (most common) to S+ (rarest)."""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Mapping

from core.creature import Rarity


class RarityTable:
    """Draws a tier with probability proportional to its weight."""

    __slots__ = ("_cumulative", "_tiers", "_total")

    def __init__(self, weights: Mapping[Rarity, float]) -> None:
        tiers = [tier for tier in Rarity if weights.get(tier, 0.0) > 0]
        if not tiers:
            raise ValueError("at least one rarity tier needs a weight above 0")
        if any(weight < 0 for weight in weights.values()):
            raise ValueError("rarity weights must be ≥ 0")
        self._tiers = tiers
        self._cumulative = list(itertools.accumulate(weights[tier] for tier in tiers))
        self._total = self._cumulative[-1]
        if not math.isfinite(self._total):
            # Finite weights can still overflow their sum, and an infinite total sends every draw to the last tier.
            raise ValueError("rarity weights must be finite, with a finite sum")

    def draw(self, rng: random.Random) -> Rarity:
        return self.at(rng.random())

    def at(self, unit: float) -> Rarity:
        """The tier at `unit` ∈ [0, 1) along the cumulative weights: a uniform `unit` gives the weighted draw."""
        point = unit * self._total
        # bisect_right so a point landing exactly on a boundary goes to the next tier, never past the end.
        index = bisect.bisect_right(self._cumulative, point)
        return self._tiers[min(index, len(self._tiers) - 1)]

    def probability(self, tier: Rarity) -> float:
        if tier not in self._tiers:
            return 0.0
        index = self._tiers.index(tier)
        low = self._cumulative[index - 1] if index else 0.0
        return (self._cumulative[index] - low) / self._total
