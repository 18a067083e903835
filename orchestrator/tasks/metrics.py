"""Quality metrics a task can name, and a seeded bootstrap interval for any of them.

Each metric takes (outputs, targets) for a whole split and returns one number; the
table says whether higher is better. Accuracy gets Wilson's interval in `Task.evaluate`
(a proportion); every other metric gets a percentile bootstrap over examples, seeded so
the same outputs always give the same interval.
"""

from __future__ import annotations

from typing import Callable

import torch

Metric = Callable[[torch.Tensor, torch.Tensor], float]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of examples whose highest output is the target class."""
    return float((outputs.argmax(dim=1) == targets).float().mean())


def r2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Coefficient of determination, 1 − SSE/SST over every output; 1 is perfect, 0 is the mean's."""
    outputs, targets = outputs.double().reshape(targets.shape), targets.double()
    residual = ((targets - outputs) ** 2).sum()
    total = ((targets - targets.mean(dim=0)) ** 2).sum()
    return float(1 - residual / total) if total > 0 else float("nan")


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean squared error."""
    return float(((outputs.double().reshape(targets.shape) - targets.double()) ** 2).mean())


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean absolute error."""
    return float((outputs.double().reshape(targets.shape) - targets.double()).abs().mean())


def macro_f1(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Unweighted mean of each class's F1 over the classes in the targets or the predictions (scikit-learn's 'macro')."""
    predicted = outputs.argmax(dim=1)
    classes = torch.unique(torch.cat([targets, predicted]))
    scores = []
    for c in classes:
        tp = int(((predicted == c) & (targets == c)).sum())
        fp, fn = int(((predicted == c) & (targets != c)).sum()), int(((predicted != c) & (targets == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(sum(scores) / len(scores))


# name -> (function, higher_is_better)
METRICS: dict[str, tuple[Metric, bool]] = {
    "accuracy": (accuracy, True),
    "macro_f1": (macro_f1, True),
    "r2": (r2, True),
    "mse": (mse, False),
    "mae": (mae, False),
}


def bootstrap_interval(
    metric: Metric, outputs: torch.Tensor, targets: torch.Tensor, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric over examples, seeded; always contains the metric's own value."""
    n = len(targets)
    if n < 2:
        raise ValueError("a bootstrap interval needs at least 2 examples")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(resamples):
        idx = torch.randint(0, n, (n,), generator=generator)
        value = metric(outputs[idx], targets[idx])
        if value == value:  # a resample with no variance (r2 undefined) is left out
            values.append(value)
    if not values:
        raise ValueError("every bootstrap resample was degenerate")
    ordered = torch.tensor(values, dtype=torch.float64)
    alpha = (1 - level) / 2
    low, high = float(torch.quantile(ordered, alpha)), float(torch.quantile(ordered, 1 - alpha))
    point = metric(outputs, targets)
    return min(low, point), max(high, point)
