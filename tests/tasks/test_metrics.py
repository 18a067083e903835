"""Quality metrics and the seeded bootstrap interval, on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from orchestrator.tasks.metrics import METRICS, bootstrap_interval, mae, mse, r2


def test_r2_mse_mae_by_hand():
    targets = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    outputs = torch.tensor([[1.0], [2.0], [3.0], [5.0]])
    assert mse(outputs, targets) == pytest.approx(0.25) and mae(outputs, targets) == pytest.approx(0.25)
    assert r2(outputs, targets) == pytest.approx(1 - 1.0 / 5.0)  # SSE 1, SST 5
    assert r2(targets, targets) == 1.0
    assert r2(torch.full_like(targets, 2.5), targets) == pytest.approx(0.0)  # predicting the mean


def test_the_bootstrap_is_seeded_brackets_the_value_and_narrows_with_more_examples():
    generator = torch.Generator().manual_seed(0)
    targets = torch.randn(400, 1, generator=generator)
    outputs = targets + 0.5 * torch.randn(400, 1, generator=generator)
    small = bootstrap_interval(r2, outputs[:50], targets[:50])
    large = bootstrap_interval(r2, outputs, targets)
    assert small == bootstrap_interval(r2, outputs[:50], targets[:50])  # same outputs, same interval
    assert small != bootstrap_interval(r2, outputs[:50], targets[:50], seed=1)
    for (low, high), n in ((small, 50), (large, 400)):
        assert low <= r2(outputs[:n], targets[:n]) <= high
    assert large[1] - large[0] < small[1] - small[0]


def test_the_bootstrap_of_a_proportion_is_close_to_wilsons():
    from orchestrator.tasks.base import wilson_interval

    targets = torch.tensor([0] * 100)
    outputs = torch.zeros(100, 2)
    outputs[:90, 0] = 1.0  # 90 of 100 right
    outputs[90:, 1] = 1.0
    low, high = bootstrap_interval(METRICS["accuracy"][0], outputs, targets)
    w_low, w_high = wilson_interval(90, 100)
    assert abs(low - w_low) < 0.03 and abs(high - w_high) < 0.03


def test_lower_is_better_metrics_say_so():
    assert METRICS["mse"][1] is False and METRICS["mae"][1] is False and METRICS["r2"][1] is True
