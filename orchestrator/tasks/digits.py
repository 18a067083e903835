"""Built-in task `digits`: scikit-learn's 8x8 digit images and a small CNN teacher."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from orchestrator.threads import torch_threads
from orchestrator.tasks.cache import cache_dir, settings_key
from orchestrator.tasks.base import Split, Task
from orchestrator.tasks.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

# How the teacher is trained, beyond its settings: part of the cache key, so a change here retrains cached teachers.
# 2: the initial weights are seeded too, and training runs on TEACHER_THREADS threads (a float sum's order, and so
# the trained weights, change with the thread count): the same settings give the same teacher on any core count.
TEACHER_RECIPE = 2
TEACHER_THREADS = 1


class DigitsSettings(BaseModel):
    """Everything that determines the digits data split and the trained teacher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    split_seed: int = 0
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    conv_widths: tuple[int, int, int] = (64, 128, 256)
    hidden_width: int = 512
    epochs: int = Field(10, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    train_seed: int = 0


class DigitsCNN(nn.Module):
    """Three 3x3 convolutions with BatchNorm, two max-pools, then two linear layers."""

    def __init__(self, conv_widths: tuple[int, int, int] = (64, 128, 256), hidden_width: int = 512, n_classes: int = 10):
        super().__init__()
        c1, c2, c3 = conv_widths
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c3 * 2 * 2, hidden_width), nn.ReLU(), nn.Linear(hidden_width, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class DigitsTask(Task):
    """scikit-learn digits (1,797 images, 10 classes), stratified 60/20/20 train/val/test."""

    name = "digits"
    metric = "accuracy"
    higher_is_better = True

    def __init__(self, **settings) -> None:
        self.settings = DigitsSettings(**settings)
        self._splits = _split_digits(self.settings)
        self._teacher: nn.Module | None = None

    def data(self, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (N, 1, 8, 8) scaled to [0, 1] and integer labels."""
        if split not in self._splits:
            raise ValueError(f"split must be one of {sorted(self._splits)}, got {split!r}")
        return self._splits[split]

    def build_model(self) -> DigitsCNN:
        """A fresh, untrained teacher architecture."""
        return DigitsCNN(self.settings.conv_widths, self.settings.hidden_width)

    def teacher(self) -> nn.Module:
        """The trained teacher: loaded from the cache, else trained and cached."""
        if self._teacher is None:
            self._teacher = self._load_or_train()
        return self._teacher

    @property
    def teacher_path(self):
        """Cache file of this task's teacher; its name hashes the settings."""
        key = settings_key({**self.settings.model_dump(), "teacher_recipe": TEACHER_RECIPE})
        return cache_dir() / f"digits-teacher-{key}.safetensors"

    def _load_or_train(self) -> nn.Module:
        path = self.teacher_path
        if path.exists():
            try:
                state, _ = load_checkpoint(path)
                model = self.build_model()
                model.load_state_dict(state)
                return model.eval()
            except CheckpointError as exc:
                log.warning("ignoring cached teacher and retraining: %s", exc)
        started = time.perf_counter()
        model = train_teacher(self, self.settings)
        quality = self.evaluate(model, "val")
        metadata = {
            "task": self.name,
            "settings": self.settings.model_dump(mode="json"),
            "val_accuracy": quality["value"],
            "train_seconds": round(time.perf_counter() - started, 2),
            "teacher_recipe": TEACHER_RECIPE,
            "train_threads": TEACHER_THREADS,
            "torch": torch.__version__,
        }
        save_checkpoint(model.state_dict(), path, metadata)
        log.info("trained digits teacher in %.1fs, val accuracy %.4f", metadata["train_seconds"], quality["value"])
        return model.eval()


def _split_digits(settings: DigitsSettings) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits  # here, not at import: sklearn costs every Ray worker 1.4 s to import
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    holdout = settings.val_fraction + settings.test_fraction
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, test_size=holdout, stratify=labels, random_state=settings.split_seed
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=settings.test_fraction / holdout, stratify=y_rest, random_state=settings.split_seed
    )
    as_tensors = lambda x, y: (torch.from_numpy(x), torch.from_numpy(y))  # noqa: E731
    return {"train": as_tensors(x_train, y_train), "val": as_tensors(x_val, y_val), "test": as_tensors(x_test, y_test)}


def train_teacher(task: DigitsTask, settings: DigitsSettings) -> DigitsCNN:
    """The teacher, built and trained with Adam and cross-entropy: the seed fixes its initial weights and its
    batches, and it trains on TEACHER_THREADS threads, so the same settings give the same weights."""
    with torch_threads(TEACHER_THREADS):
        torch.manual_seed(settings.train_seed)
        model = task.build_model()
        _fit(model, task, settings)
    return model


def _fit(model: nn.Module, task: Task, settings: DigitsSettings) -> None:
    inputs, _ = task.data("train")
    steps = settings.epochs * (len(inputs) // settings.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.learning_rate * 3, total_steps=steps)
    model.train()
    batches = task.train_batches(settings.batch_size, seed=settings.train_seed)
    for _ in range(steps):
        x, y = next(batches)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    model.eval()
