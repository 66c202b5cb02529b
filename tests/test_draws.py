"""Seed streams: reproducible, independent per stream, and uniform enough to draw rarities and names."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from core.draws import DigestDraws, unit

seeds = st.integers(min_value=0, max_value=2**63 - 1)


@given(seeds)
def test_unit_is_reproducible_and_in_range(seed: int) -> None:
    value = unit(seed, b"rarity")
    assert 0.0 <= value < 1.0
    assert unit(seed, b"rarity") == value


def test_streams_are_independent() -> None:
    pairs = [(unit(seed, b"rarity"), unit(seed, b"image")) for seed in range(2000)]
    assert sum(a == b for a, b in pairs) == 0
    # Buckets of one stream tell nothing about the other: both halves spread evenly.
    low = [b for a, b in pairs if a < 0.5]
    assert 0.4 < sum(b < 0.5 for b in low) / len(low) < 0.6


def test_unit_is_uniform() -> None:
    draws = 60_000
    counts = Counter(int(unit(seed, b"x") * 10) for seed in range(draws))
    expected = draws / 10
    chi_square = sum((counts[bucket] - expected) ** 2 / expected for bucket in range(10))
    assert chi_square < 33.7  # the 0.9999 quantile for 9 degrees of freedom


@given(seeds, st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=200))
def test_draws_are_reproducible_and_in_range(seed: int, sizes: list[int]) -> None:
    first, second = DigestDraws(seed, b"name"), DigestDraws(seed, b"name")
    picks = [first.choice(range(size)) for size in sizes]
    assert picks == [second.choice(range(size)) for size in sizes]
    assert all(0 <= pick < size for pick, size in zip(picks, sizes, strict=True))
    value = first.random()
    assert 0.0 <= value < 1.0


def test_choices_are_uniform_across_many_blocks() -> None:
    draws = DigestDraws(7, b"name")
    counts = Counter(draws.choice("abcdefg") for _ in range(70_000))  # crosses hundreds of hash blocks
    expected = 10_000
    chi_square = sum((count - expected) ** 2 / expected for count in counts.values())
    assert len(counts) == 7
    assert chi_square < 27.9  # the 0.9999 quantile for 6 degrees of freedom


def test_different_seeds_and_streams_differ() -> None:
    def sequence(seed: int, stream: bytes) -> list[int]:
        draws = DigestDraws(seed, stream)
        return [draws.choice(range(1000)) for _ in range(20)]

    assert sequence(1, b"name") != sequence(2, b"name")
    assert sequence(1, b"name") != sequence(1, b"other")
