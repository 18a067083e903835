"""The open-loop schedule: Poisson arrivals at the asked rate, inside the step, the same for the same seed."""

from __future__ import annotations

import math

import pytest

from orchestrator.loadtest.arrivals import poisson_arrivals


def test_arrivals_follow_the_rate_within_the_duration():
    rate, duration = 200.0, 50.0
    times = poisson_arrivals(rate, duration, seed=3)
    expected = rate * duration
    assert abs(len(times) - expected) < 4 * math.sqrt(expected)  # Poisson: the count's sd is sqrt(mean)
    assert times == sorted(times) and 0 < times[0] and times[-1] < duration
    gaps = [b - a for a, b in zip(times, times[1:])]
    mean = sum(gaps) / len(gaps)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert mean == pytest.approx(1 / rate, rel=0.05)
    assert sd == pytest.approx(mean, rel=0.1)  # exponential gaps: sd = mean (a fixed pace would have sd 0)


def test_the_seed_fixes_the_schedule():
    assert poisson_arrivals(50, 2, seed=1) == poisson_arrivals(50, 2, seed=1)
    assert poisson_arrivals(50, 2, seed=1) != poisson_arrivals(50, 2, seed=2)


@pytest.mark.parametrize("rate, duration", [(0, 1), (-1, 1), (1, 0)])
def test_a_rate_or_duration_that_is_not_positive_is_refused(rate, duration):
    with pytest.raises(ValueError, match="positive"):
        poisson_arrivals(rate, duration, seed=0)
