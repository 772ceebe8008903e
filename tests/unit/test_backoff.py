"""Backoff delays: exponential to a cap, half of each one random."""

from __future__ import annotations

import random

import pytest

from resilience.backoff import Backoff


def test_ceilings_grow_exponentially_to_the_cap() -> None:
    backoff = Backoff(initial_s=0.5, cap_s=20)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 6, 7, 2000)] == [0.5, 1, 2, 16, 20, 20]


def test_each_delay_lies_in_the_upper_half_of_its_ceiling_and_they_differ() -> None:
    backoff = Backoff(initial_s=1, cap_s=8)
    rng = random.Random(7)
    for attempt in range(1, 8):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        ceiling = backoff.ceiling(attempt)
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) == len(delays)  # spread, not one instant for everyone
        assert max(delays) - min(delays) > ceiling / 4


def test_successive_delays_never_shrink_below_the_cap() -> None:
    backoff = Backoff(initial_s=0.2, cap_s=10)
    rng = random.Random(3)
    for _ in range(100):
        delays = [backoff.delay(n, rng) for n in range(1, 7)]
        assert delays == sorted(delays)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_s": 0, "cap_s": 1},
        {"initial_s": 2, "cap_s": 1},
        {"initial_s": 1, "cap_s": 2, "multiplier": 0.5},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
