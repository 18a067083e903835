"""A user's regression task, by import path 'tests.tasks.regression_task:make_task': float targets, scored by R².

A small MLP fits a smooth nonlinear function of 8 features plus noise; it trains in about
a second, seeded, so every process builds the same teacher.
"""

from __future__ import annotations

import torch
from torch import nn

from orchestrator.tasks import Split, Task


class RegressionTask(Task):
    """y = tanh(x·w) + 0.3·x₀² + noise; fixed, seeded, disjoint splits; R² with a bootstrap interval."""

    name = "regression"
    metric = "r2"
    higher_is_better = True

    def __init__(self, n_features: int = 8, n_examples: int = 900, noise: float = 0.05, seed: int = 0, hidden: int = 64):
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(n_examples, n_features, generator=generator)
        weights = torch.randn(n_features, 1, generator=generator) / n_features**0.5
        targets = torch.tanh(inputs @ weights) + 0.3 * inputs[:, :1] ** 2
        targets = targets + noise * torch.randn(n_examples, 1, generator=generator)
        n_val = n_test = n_examples // 6
        self._splits = {
            "val": (inputs[:n_val], targets[:n_val]),
            "test": (inputs[n_val : n_val + n_test], targets[n_val : n_val + n_test]),
            "train": (inputs[n_val + n_test :], targets[n_val + n_test :]),
        }
        self.n_features, self.hidden, self.seed = n_features, hidden, seed
        self._teacher: nn.Module | None = None

    def build_model(self) -> nn.Module:
        """The architecture, untrained (export rebuilds pruned widths from it)."""
        return nn.Sequential(
            nn.Linear(self.n_features, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, 1),
        )  # fmt: skip

    def teacher(self) -> nn.Module:
        if self._teacher is None:
            torch.manual_seed(self.seed)
            model = self.build_model()
            inputs, targets = self._splits["train"]
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(600):
                optimizer.zero_grad()
                nn.functional.mse_loss(model(inputs), targets).backward()
                optimizer.step()
            self._teacher = model.eval()
        return self._teacher

    def data(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self._splits:
            raise ValueError(f"split must be one of {sorted(self._splits)}, got {split!r}")
        return self._splits[split]


def make_task(**kwargs) -> RegressionTask:
    """The factory a config names: 'tests.tasks.regression_task:make_task'."""
    return RegressionTask(**kwargs)
