"""Retry delays: exponential with equal jitter, never zero, never above the cap."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from baton.backoff import backoff_seconds

SAMPLES = 500


class FixedUniform:
    """A stand-in for ``random.Random`` whose ``uniform`` always returns one end."""

    def __init__(self, end: str) -> None:
        self.end = end

    def uniform(self, low: float, high: float) -> float:
        return low if self.end == "low" else high


def samples(attempt: int, base: float, cap: float, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [backoff_seconds(attempt, base, cap, rng) for _ in range(SAMPLES)]


@pytest.mark.parametrize(("base", "cap"), [(0.1, 1.0), (5.0, 900.0), (60.0, 3600.0), (5.0, 2.0)])
@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 10, 33, 100])
def test_never_zero_and_never_above_cap(attempt: int, base: float, cap: float) -> None:
    delays = samples(attempt, base, cap)
    assert min(delays) > 0
    assert max(delays) <= cap


@pytest.mark.parametrize(("base", "cap"), [(1.0, 1000.0), (5.0, 900.0), (0.5, 60.0)])
@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 6, 8, 12])
def test_equal_jitter_stays_within_half_step_and_step(
    attempt: int, base: float, cap: float
) -> None:
    step = min(cap, base * 2 ** (attempt - 1))
    delays = samples(attempt, base, cap)
    assert all(step / 2 <= delay <= step for delay in delays)
    # both halves of the range are actually used: the jitter is not degenerate
    assert min(delays) < step * 0.6
    assert max(delays) > step * 0.9


@pytest.mark.parametrize(("end", "fraction"), [("low", 0.5), ("high", 1.0)])
def test_jitter_bounds_are_exactly_half_step_and_step(end: str, fraction: float) -> None:
    rng = FixedUniform(end)
    for attempt, step in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (20, 900.0)]:
        assert backoff_seconds(attempt, 5.0, 900.0, rng) == pytest.approx(step * fraction)  # type: ignore[arg-type]


def test_median_grows_with_attempt_until_the_cap() -> None:
    medians = [statistics.median(samples(attempt, 1.0, 10_000.0)) for attempt in range(1, 12)]
    assert medians == sorted(medians)
    assert all(later > earlier * 1.5 for earlier, later in itertools.pairwise(medians))


def test_every_delay_of_the_next_attempt_is_at_least_every_delay_of_this_one() -> None:
    # Equal jitter: attempt n spans [s/2, s] and attempt n+1 spans [s, 2s].
    for attempt in range(1, 10):
        assert max(samples(attempt, 2.0, 10_000.0)) <= min(samples(attempt + 1, 2.0, 10_000.0))


def test_median_levels_off_at_the_cap() -> None:
    capped = [statistics.median(samples(attempt, 5.0, 60.0)) for attempt in (10, 20, 40)]
    assert all(45.0 - 3 < median < 45.0 + 3 for median in capped)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    rng = random.Random(1)
    for attempt in (64, 1_000, 10**9):
        assert 450.0 <= backoff_seconds(attempt, 5.0, 900.0, rng) <= 900.0


def test_zero_base_means_no_delay() -> None:
    assert backoff_seconds(3, 0.0, 900.0, random.Random(1)) == 0.0


def test_same_seed_gives_the_same_delays() -> None:
    assert samples(4, 5.0, 900.0, seed=42) == samples(4, 5.0, 900.0, seed=42)
    assert samples(4, 5.0, 900.0, seed=42) != samples(4, 5.0, 900.0, seed=43)


def test_returns_a_float() -> None:
    assert isinstance(backoff_seconds(1, 5, 900, random.Random(0)), float)
