"""replicas_needed: the hand-computed cases, exact at integer boundaries."""

from __future__ import annotations

import math

import pytest

from orchestrator.cost.model import replicas_needed


@pytest.mark.parametrize(
    ("rps", "throughput_sps", "utilization", "min_replicas", "expected"),
    [
        (1000, 2500, 0.6, 1, 1),  # 1000 / 1500 = 0.67 -> 1
        (10000, 2500, 0.6, 1, 7),  # 10000 / 1500 = 6.67 -> 7
        (1500, 2500, 0.6, 1, 1),  # exactly 1.0 -> 1, not 2
        (1500.01, 2500, 0.6, 1, 2),  # just above -> 2
        (1000, 2500, 0.4, 1, 1),  # 1000 / 1000 exactly
        (2.1, 1, 0.7, 1, 3),  # float division gives 3.0000000000000004
        (1000, 2500, 0.6, 3, 3),  # min_replicas wins
        (0, 2500, 0.6, 2, 2),  # no traffic: the floor
    ],
)
def test_replicas_needed(rps, throughput_sps, utilization, min_replicas, expected):
    assert replicas_needed(rps, throughput_sps, utilization, min_replicas) == expected


def test_naive_float_division_would_overshoot_the_boundary_case():
    assert math.ceil(2.1 / (1 * 0.7)) == 4  # why replicas_needed computes with exact fractions


@pytest.mark.parametrize(("throughput_sps", "utilization"), [(0, 0.6), (-1, 0.6), (float("nan"), 0.6), (100, 0)])
def test_nonsense_inputs_raise(throughput_sps, utilization):
    with pytest.raises(ValueError):
        replicas_needed(100, throughput_sps, utilization, 1)
