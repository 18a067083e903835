"""A user's task whose model takes named inputs (`features`, `mask`), as a transformer takes `input_ids` and
`attention_mask`; by import path 'tests.tasks.named_inputs_task:make_task'."""

from __future__ import annotations

import torch
from torch import nn

from orchestrator.tasks import Split, Task


class MaskedMLP(nn.Module):
    """Classifies `features * mask`: forward takes both as keyword arguments."""

    def __init__(self, n_features: int, hidden: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(features * mask))


class NamedInputsTask(Task):
    """Gaussian blobs with a fixed 10% of features masked out; inputs are {'features', 'mask'}."""

    name = "named-inputs"

    def __init__(self, n_features: int = 12, n_classes: int = 3, per_class: int = 120, seed: int = 0, hidden: int = 32):
        generator = torch.Generator().manual_seed(seed)
        centres = 2.0 * torch.randn(n_classes, n_features, generator=generator)
        labels = torch.arange(n_classes).repeat_interleave(per_class)
        features = centres[labels] + torch.randn(len(labels), n_features, generator=generator)
        mask = (torch.rand(len(labels), n_features, generator=generator) > 0.1).float()
        order = torch.randperm(len(labels), generator=generator)
        features, mask, labels = features[order], mask[order], labels[order]
        n_val = n_test = len(labels) // 5

        def part(lo: int, hi: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
            return {"features": features[lo:hi], "mask": mask[lo:hi]}, labels[lo:hi]

        self._splits = {"val": part(0, n_val), "test": part(n_val, n_val + n_test), "train": part(n_val + n_test, len(labels))}
        self.shape = (n_features, hidden, n_classes)
        self.seed = seed
        self._teacher: nn.Module | None = None

    def build_model(self) -> nn.Module:
        return MaskedMLP(*self.shape)

    def teacher(self) -> nn.Module:
        if self._teacher is None:
            torch.manual_seed(self.seed)
            model = self.build_model()
            inputs, labels = self._splits["train"]
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(200):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(**inputs), labels).backward()
                optimizer.step()
            self._teacher = model.eval()
        return self._teacher

    def data(self, split: Split) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if split not in self._splits:
            raise ValueError(f"split must be one of {sorted(self._splits)}, got {split!r}")
        return self._splits[split]


def make_task(**kwargs) -> NamedInputsTask:
    """The factory a config names: 'tests.tasks.named_inputs_task:make_task'."""
    return NamedInputsTask(**kwargs)
