"""A user's own task, loaded by import path 'tests.tasks.user_task:make_task' (no training needed).

Gaussian blobs around fixed class centres, and a Linear-only teacher that is the
Bayes-optimal nearest-centre classifier: logit_k = x·μ_k − ‖μ_k‖²/2.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from orchestrator.tasks import Split, Task, load_checkpoint


class BlobsTask(Task):
    """`n_classes` isotropic Gaussian blobs in `n_features` dimensions; fixed, seeded splits."""

    name = "blobs"

    def __init__(
        self,
        n_features: int = 16,
        n_classes: int = 4,
        per_class: int = 60,
        noise: float = 1.0,
        seed: int = 0,
        checkpoint: str | None = None,
    ):
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        generator = torch.Generator().manual_seed(seed)
        self.centres = 2.0 * torch.randn(n_classes, n_features, generator=generator)
        labels = torch.arange(n_classes).repeat_interleave(per_class)
        inputs = self.centres[labels] + noise * torch.randn(len(labels), n_features, generator=generator)
        order = torch.randperm(len(labels), generator=generator)
        inputs, labels = inputs[order], labels[order]
        n_val = n_test = len(labels) // 5
        self._splits = {
            "val": (inputs[:n_val], labels[:n_val]),
            "test": (inputs[n_val : n_val + n_test], labels[n_val : n_val + n_test]),
            "train": (inputs[n_val + n_test :], labels[n_val + n_test :]),
        }
        self.checkpoint = checkpoint  # teacher weights from a file (as a user's task loads its trained model)
        self._teacher: nn.Module | None = None

    def teacher(self) -> nn.Module:
        if self._teacher is None:
            layer = nn.Linear(self.centres.shape[1], self.centres.shape[0])
            if self.checkpoint is not None:
                state, _ = load_checkpoint(Path(self.checkpoint))
                layer.load_state_dict(state)
            else:
                with torch.no_grad():
                    layer.weight.copy_(self.centres)
                    layer.bias.copy_(-0.5 * (self.centres**2).sum(dim=1))
            self._teacher = layer.eval()
        return self._teacher

    def data(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in self._splits:
            raise ValueError(f"split must be one of {sorted(self._splits)}, got {split!r}")
        return self._splits[split]


def make_task(**kwargs) -> BlobsTask:
    """The factory a config names: 'tests.tasks.user_task:make_task'."""
    return BlobsTask(**kwargs)


def not_a_task() -> object:
    """A factory that returns the wrong type, for the registry's error path."""
    return object()
