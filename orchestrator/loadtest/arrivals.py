"""Poisson arrival times: the open-loop schedule the load generator keeps, whatever the server answers.

Pure Python (no torch, no gevent): the Locust process imports it.
"""

from __future__ import annotations

import random


def poisson_arrivals(rate_rps: float, duration_s: float, seed: int) -> list[float]:
    """Seconds from the start at which requests arrive: exponential gaps of mean 1/rate_rps, all before duration_s."""
    if not rate_rps > 0 or not duration_s > 0:
        raise ValueError(f"rate_rps and duration_s must be positive, got {rate_rps!r} and {duration_s!r}")
    rng = random.Random(seed)
    times: list[float] = []
    t = rng.expovariate(rate_rps)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate_rps)
    return times
