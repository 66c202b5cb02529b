"""Weighted rarity: every tier reachable, frequencies follow the weights, zero weights never drawn."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.config import DEFAULT_RARITY_WEIGHTS
from core.creature import Rarity
from core.rarity import RarityTable

weights_strategy = st.fixed_dictionaries(
    {tier: st.floats(min_value=0, max_value=1000, allow_nan=False) for tier in Rarity}
).filter(lambda weights: sum(weights.values()) > 0)


@given(weights=weights_strategy, seed=st.integers(min_value=0, max_value=2**63 - 1))
def test_draws_only_tiers_with_weight(weights: dict[Rarity, float], seed: int) -> None:
    table = RarityTable(weights)
    tier = table.draw(random.Random(seed))
    assert weights[tier] > 0


@given(weights=weights_strategy)
def test_probabilities_sum_to_one_and_follow_weights(weights: dict[Rarity, float]) -> None:
    table = RarityTable(weights)
    total = sum(weights.values())
    assert sum(table.probability(tier) for tier in Rarity) == pytest.approx(1.0)
    for tier in Rarity:
        assert table.probability(tier) == pytest.approx(weights[tier] / total)


def test_frequencies_match_the_default_weights() -> None:
    table = RarityTable(DEFAULT_RARITY_WEIGHTS)
    rng = random.Random(1234)
    draws = 200_000
    counts = Counter(table.draw(rng) for _ in range(draws))
    total = sum(DEFAULT_RARITY_WEIGHTS.values())
    for tier in Rarity:
        expected = DEFAULT_RARITY_WEIGHTS[tier] / total  # from the weights, not from the table under test
        observed = counts[tier] / draws
        # Five standard deviations of a binomial proportion: a real bias fails, noise does not.
        tolerance = 5 * (expected * (1 - expected) / draws) ** 0.5
        assert abs(observed - expected) <= tolerance, (tier, observed, expected)
    ordered = [counts[tier] for tier in Rarity]
    assert ordered == sorted(ordered, reverse=True)


class FixedRandom(random.Random):
    """A generator whose every uniform draw is `value`."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_the_tier_is_the_one_at_the_rngs_draw_along_the_weights() -> None:
    table = RarityTable(DEFAULT_RARITY_WEIGHTS)
    total = sum(DEFAULT_RARITY_WEIGHTS.values())
    below = 0.0
    for tier in Rarity:
        weight = DEFAULT_RARITY_WEIGHTS[tier]
        # Near the start, the middle and near the end of each tier's span of [0, 1).
        for inside in (weight * 1e-9, weight / 2, weight * (1 - 1e-9)):
            assert table.draw(FixedRandom((below + inside) / total)) is tier, (tier, inside)
        below += weight


def test_a_point_on_the_upper_edge_stays_in_range() -> None:
    class EdgeRandom(random.Random):
        def random(self) -> float:
            return 1.0 - 2**-53

    weights = dict.fromkeys(Rarity, 0.0) | {Rarity.F: 1.0, Rarity.S_PLUS: 1.0}
    assert RarityTable(weights).draw(EdgeRandom()) is Rarity.S_PLUS


@pytest.mark.parametrize("weights", [{}, dict.fromkeys(Rarity, 0.0), {Rarity.F: -1.0, Rarity.E: 2.0}])
def test_unusable_weights_are_refused(weights: dict[Rarity, float]) -> None:
    with pytest.raises(ValueError):
        RarityTable(weights)
