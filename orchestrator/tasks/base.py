"""The Task contract: the model to compress, its data, and how its quality is judged."""

from __future__ import annotations

import abc
import math
from typing import Any, Iterator, Literal, Mapping, NamedTuple, TypedDict

import torch
from torch import nn

from orchestrator.tasks.batches import Inputs, batch_size as n_examples, repeat_to, run_in_chunks, take
from orchestrator.tasks.losses import DistillLoss, LossSettings, kd_loss, regression_kd_loss
from orchestrator.tasks.metrics import METRICS, bootstrap_interval

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


class Quality(TypedDict):
    """One quality measurement: the metric's value with its 95% confidence interval."""

    metric: str
    value: float
    higher_is_better: bool
    split: str
    n_examples: int
    ci95_low: float
    ci95_high: float


class Evaluation(NamedTuple):
    """A quality measurement with what lies behind it: per-item scores (for a paired drop) and diagnostics."""

    quality: Quality
    items: torch.Tensor | None  # the metric of each item, in a fixed order; None: the task provides none
    diagnostics: dict[str, float]  # e.g. agreement with the teacher, shown beside the objective, never the bound


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion; stays inside [0, 1] even at 0% or 100%."""
    if n <= 0:
        raise ValueError("n must be positive for a confidence interval")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval holds p exactly; at 0% or 100% rounding alone would put p a hair outside it.
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def quality_drop(baseline: float, candidate: float, higher_is_better: bool = True) -> float:
    """How much quality a candidate gave up against the baseline: positive is worse, whichever way the metric points."""
    return baseline - candidate if higher_is_better else candidate - baseline


def paired_drop(
    baseline: torch.Tensor, candidate: torch.Tensor, higher_is_better: bool = True, seed: int = 0
) -> tuple[float, float, float]:
    """(drop, ci95_low, ci95_high) of baseline minus candidate on the same items: a bootstrap of per-item differences."""
    baseline, candidate = torch.as_tensor(baseline).double(), torch.as_tensor(candidate).double()
    if baseline.shape != candidate.shape:
        raise ValueError(
            "a paired drop needs the same items on both sides (the same queries, the same examples): "
            f"{tuple(baseline.shape)} vs {tuple(candidate.shape)}"
        )
    diff = quality_drop(baseline, candidate, higher_is_better)
    low, high = bootstrap_interval(lambda v, _: float(v.mean()), diff, diff, seed=seed)
    return float(diff.mean()), low, high


def model_device(model: nn.Module) -> torch.device:
    """The device a model's weights live on (CPU for a model with no tensors)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


class Task(abc.ABC):
    """A model to compress and the data that judges it.

    Call order: `teacher()` first (built or loaded once, then cached by the task);
    afterwards any of `data`, `train_batches`, `calibration_batches`,
    `example_batch`, `evaluate` and `distill_loss`, in any order. Implementations
    supply the two abstract methods. `metric` names the quality metric (accuracy,
    r2, mse, mae, or the task's own by overriding `score`): accuracy gets Wilson's
    interval, any other metric a seeded bootstrap. `distill_loss` picks by the
    targets: class ids get KL + CE, float targets MSE to the teacher and to the
    targets; a task may override it. The `val` split is what a search optimizes;
    `test` is held out to confirm the final choice, and the two never overlap.
    A split is judged `predict_batch_size` examples at a time (`predict`), so the
    memory it takes follows that chunk, never the split's size; only the outputs
    of the whole split are kept. A task judges its own way by overriding
    `evaluate_items` (or its hooks `quality_of`, `per_item_scores`,
    `diagnostics_of`); `evaluate` is its quality. What a task offers beyond the
    contract is declared: `distill_losses` (a task offering
    `DistillLoss.CONTRASTIVE` implements `pair_batches`) and `build_model`.
    """

    name: str = "task"
    metric: str = "accuracy"
    higher_is_better: bool = True
    sequence_inputs: tuple[str, ...] = ()  # named inputs whose dimension 1 is a sequence length (exported dynamic)
    distill_targets_are_teacher: bool = False  # True: train targets are the teacher's outputs, so KD needn't rerun it
    predict_batch_size: int = 512  # examples run at once when judging a model: its activations at this batch bound memory
    distill_losses: tuple[DistillLoss, ...] = (DistillLoss.AUTO,)  # the losses distillation may ask this task for
    generates: bool = False  # True: a causal LM, measured and priced in tokens, served with generate()

    @abc.abstractmethod
    def teacher(self) -> nn.Module:
        """The trained, uncompressed model in eval mode, on the CPU."""

    @abc.abstractmethod
    def data(self, split: Split) -> tuple[Inputs, torch.Tensor]:
        """Inputs (a tensor, or a mapping of named tensors) and targets of one split, as CPU tensors."""

    def example_batch(self, batch_size: int) -> Inputs:
        """A serving batch of `batch_size` inputs (validation inputs, repeated as needed)."""
        inputs, _ = self.data("val")
        return repeat_to(inputs, batch_size)

    def train_batches(self, batch_size: int, seed: int = 0) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Endless shuffled training batches, reproducible from the seed."""
        inputs, targets = self.data("train")
        n = n_examples(inputs)
        if not 1 <= batch_size <= n:
            # Without this check a batch larger than the training split never yields and loops forever.
            raise ValueError(f"batch_size must be between 1 and the {n} training examples, got {batch_size}")
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, len(order) - batch_size + 1, batch_size):
                idx = order[start : start + batch_size]
                yield take(inputs, idx), targets[idx]

    @property
    def label(self) -> str:
        """What is compressed, as a reader names it (run folders and report titles): the task's name by default; a task
        wrapping a model of the user's names the model."""
        return self.name

    def build_model(self) -> nn.Module | None:
        """Optional hook: the task's architecture, untrained, for loading exported weights into without building the
        teacher; None (the default): the teacher itself is the architecture."""
        return None

    def pair_batches(self, batch_size: int, seed: int = 0) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Hook of a task that offers `DistillLoss.CONTRASTIVE`: endless batches of `batch_size` (query, passage)
        training pairs, the queries first and their passages after (2 × batch_size rows), with the teacher's outputs
        as targets."""
        raise ValueError(
            f"kd_loss contrastive: task {self.name!r} has no (query, passage) training pairs; "
            "it applies to sentence-embedding tasks (minilm, examples.hf_encoder_task)"
        )

    def compact(self, inputs: Inputs) -> Inputs:
        """A training batch with what the model ignores (padding) dropped, before distillation runs it; as is by default."""
        return inputs

    def token_mask(self, inputs: Inputs) -> torch.Tensor | None:
        """Which positions of a batch are real tokens (1) and which padding (0), for per-token losses; None: all count.

        By default a mapping's `attention_mask` (the Hugging Face convention); override it where the mask is named otherwise.
        """
        return inputs.get("attention_mask") if isinstance(inputs, Mapping) else None

    def calibration_batches(self, n_batches: int = 8, batch_size: int = 64) -> list[Inputs]:
        """Training inputs for post-training quantization's calibration."""
        batches = self.train_batches(batch_size, seed=1234)
        return [next(batches)[0] for _ in range(n_batches)]

    @torch.inference_mode()
    def predict(self, model: nn.Module, inputs: Inputs, batch_size: int | None = None) -> torch.Tensor:
        """Model outputs for `inputs`, `batch_size` (default `predict_batch_size`) at a time on the model's device,
        returned on the CPU in order: memory follows the chunk, never the split. An override keeps the chunking."""
        return run_in_chunks(model, inputs, batch_size or self.predict_batch_size, device=model_device(model))

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """The task's metric on a split's outputs; override it for a metric of your own."""
        if self.metric not in METRICS:
            raise ValueError(
                f"metric {self.metric!r}: not a built-in metric ({', '.join(METRICS)}); override Task.score to provide it"
            )
        return METRICS[self.metric][0](outputs, targets)

    def evaluate(self, model: nn.Module, split: Split) -> Quality:
        """The task's metric on a split with a 95% interval: Wilson's for accuracy, a seeded bootstrap otherwise."""
        return self.evaluate_items(model, split).quality

    def evaluate_progress(self, model: nn.Module) -> float:
        """Quality while distilling (ASHA's signal): the val metric; a task may judge a fixed subset of val instead."""
        return self.evaluate(model, "val")["value"]

    def evaluate_items(self, model: nn.Module, split: Split) -> Evaluation:
        """`evaluate`, plus the per-item scores behind it and the task's diagnostics, from one pass over the split."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        was_training = model.training
        model.eval()
        inputs, targets = self.data(split)
        outputs = self.predict(model, inputs)
        model.train(was_training)
        value, low, high = self.quality_of(outputs, targets, split)
        quality = Quality(
            metric=self.metric,
            value=value,
            higher_is_better=self.higher_is_better,
            split=split,
            n_examples=len(targets),
            ci95_low=low,
            ci95_high=high,
        )
        items = self.per_item_scores(outputs, targets, split)
        if items is not None:
            quality["n_examples"] = len(items)  # what the metric averages over (queries, not their passages)
        return Evaluation(quality, items, self.diagnostics_of(outputs, targets, split))

    def diagnostics_of(self, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> dict[str, float]:
        """Optional hook: named figures shown beside the quality (never the bound) from a split's outputs; none here."""
        return {}

    def per_item_scores(self, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> torch.Tensor | None:
        """Optional hook: the metric of each item (query, example) in a fixed order, whose mean is the quality.

        A task that provides it gets a paired interval on its quality drop: a bootstrap over items of candidate
        minus teacher on the same items. None (the default): the drop has no interval of its own.
        """
        return None

    def quality_of(self, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> tuple[float, float, float]:
        """(value, ci95_low, ci95_high) of a split's outputs; override where examples are not independent items."""
        if self.metric == "accuracy":
            correct = int((outputs.argmax(dim=1) == targets).sum())
            low, high = wilson_interval(correct, len(targets))
            return correct / len(targets), low, high
        low, high = bootstrap_interval(self.score, outputs, targets)
        return self.score(outputs, targets), low, high

    def save_preprocessor(self, folder: Any) -> dict[str, Any] | None:
        """Write what turns raw requests into inputs (a tokenizer) into `folder`, for export; None: inputs are tensors."""
        return None

    def distill_loss(
        self, student_out: torch.Tensor, teacher_out: torch.Tensor, targets: torch.Tensor, settings: LossSettings
    ) -> torch.Tensor:
        """The distillation loss for one batch; `settings` carries the temperature, alpha and the loss asked for
        (one of `distill_losses`).

        Class ids (integer targets): alpha·T²·KL(teacher_T ‖ student_T) + (1 − alpha)·CE, Hinton et al.
        Float targets (regression, embeddings): alpha·MSE(student, teacher) + (1 − alpha)·MSE(student, targets).
        """
        if targets.dtype.is_floating_point:
            return regression_kd_loss(student_out, teacher_out, targets, settings.alpha)
        return kd_loss(student_out, teacher_out, targets, settings.temperature, settings.alpha)
