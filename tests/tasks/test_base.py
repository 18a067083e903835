"""The Task base class: Wilson's interval, evaluate, and the default data helpers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from orchestrator.tasks import SPLITS, Task, model_device, wilson_interval


class FixedTask(Task):
    """Ten examples per split; input i is the one-hot vector e_(i mod 4), its label i mod 4."""

    name = "fixed"

    def __init__(self, n: int = 10) -> None:
        labels = torch.arange(n) % 4
        self._data = {s: (nn.functional.one_hot(labels, 4).float(), labels) for s in SPLITS}

    def teacher(self) -> nn.Module:
        return nn.Identity()

    def data(self, split):
        return self._data[split]


class WrongOnClass(nn.Module):
    """Predicts the one-hot class, except that class `wrong` is always predicted as (wrong + 1) % 4."""

    def __init__(self, wrong: int) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4, bias=False)
        perm = torch.arange(4)
        perm[wrong] = (wrong + 1) % 4
        with torch.no_grad():
            self.linear.weight.copy_(nn.functional.one_hot(perm, 4).float().T)

    def forward(self, x):
        return self.linear(x)


def hand_wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (k + z * z / 2) / (n + z * z)
    half = z * math.sqrt(n) / (n + z * z) * math.sqrt(p * (1 - p) + z * z / (4 * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(50, 100), (97, 100), (3, 10), (359, 360)])
def test_wilson_matches_the_textbook_form(k, n):
    low, high = wilson_interval(k, n)
    hand_low, hand_high = hand_wilson(k, n)
    assert low == pytest.approx(hand_low, abs=1e-12)
    assert high == pytest.approx(hand_high, abs=1e-12)
    assert low < k / n < high


def test_wilson_known_value_and_extremes():
    low, high = wilson_interval(50, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    low0, high0 = wilson_interval(0, 10)
    assert low0 == 0.0 and high0 == pytest.approx(0.2775, abs=1e-4)
    low1, high1 = wilson_interval(10, 10)
    assert high1 == pytest.approx(1.0) and high1 <= 1.0 and low1 == pytest.approx(0.7225, abs=1e-4)


@pytest.mark.parametrize("n", [1, 7, 10, 100, 359, 360, 1797])
def test_wilson_holds_the_proportion_exactly_even_at_the_extremes(n):
    """At 100% the upper end is 1.0 itself, not 0.9999999999999998 (a perfect val split on 359 examples hit this)."""
    for k in sorted({0, 1, n // 2, n - 1, n}):
        low, high = wilson_interval(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
    assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0


def test_wilson_narrows_with_more_examples():
    narrow = wilson_interval(900, 1000)
    wide = wilson_interval(9, 10)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5


def test_wilson_refuses_empty_sample():
    with pytest.raises(ValueError, match="n must be positive"):
        wilson_interval(0, 0)


def test_evaluate_counts_exactly_and_restores_training_mode():
    task = FixedTask(n=10)  # labels 0,1,2,3,0,1,2,3,0,1: class 2 appears twice
    model = WrongOnClass(wrong=2).train()
    quality = task.evaluate(model, "test")
    assert quality["value"] == pytest.approx(8 / 10)
    assert quality["n_examples"] == 10
    assert quality["split"] == "test"
    assert quality["metric"] == "accuracy" and quality["higher_is_better"] is True
    assert (quality["ci95_low"], quality["ci95_high"]) == wilson_interval(8, 10)
    assert model.training, "evaluate must put the model back in training mode"
    task.evaluate(model.eval(), "val")
    assert not model.training, "evaluate must leave an eval-mode model in eval mode"


def test_evaluate_rejects_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        FixedTask().evaluate(nn.Identity(), "validation")


def test_example_batch_repeats_validation_inputs():
    task = FixedTask(n=10)
    batch = task.example_batch(25)
    assert batch.shape == (25, 4) and batch.is_contiguous()
    val_inputs, _ = task.data("val")
    assert torch.equal(batch[:10], val_inputs) and torch.equal(batch[10:20], val_inputs)
    assert torch.equal(task.example_batch(3), val_inputs[:3])


def test_train_batches_are_shuffled_full_batches_covering_an_epoch():
    task = FixedTask(n=12)
    batches = task.train_batches(4, seed=0)
    epoch = [next(batches) for _ in range(3)]
    assert all(x.shape == (4, 4) and y.shape == (4,) for x, y in epoch)
    labels = torch.cat([y for _, y in epoch])
    assert sorted(labels.tolist()) == sorted(task.data("train")[1].tolist())


def test_train_batches_larger_than_training_split_is_an_error_not_a_hang():
    task = FixedTask(n=10)
    with pytest.raises(ValueError, match="batch_size"):
        next(task.train_batches(11))
    with pytest.raises(ValueError, match="batch_size"):
        next(task.train_batches(0))


def test_calibration_batches_are_training_inputs():
    task = FixedTask(n=12)
    batches = task.calibration_batches(n_batches=3, batch_size=4)
    assert len(batches) == 3 and all(b.shape == (4, 4) for b in batches)
    train_rows = {tuple(r.tolist()) for r in task.data("train")[0]}
    assert all(tuple(r.tolist()) in train_rows for b in batches for r in b)


def test_model_device():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_task_is_abstract():
    with pytest.raises(TypeError):
        Task()  # type: ignore[abstract]
