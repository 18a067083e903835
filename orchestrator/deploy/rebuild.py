"""Rebuild a trial's candidate from its recipe and the task's teacher, and check it against the trial.

The candidate is rebuilt by `apply_recipe` itself, asked to keep the model where its
float weights end (declared by each technique config), so an ONNX Runtime int8 program
can be built from the same float weights the torch int8 model was calibrated from, and
a compiled or ONNX Runtime candidate ships those float weights beside its program.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from orchestrator.threads import torch_threads
from orchestrator.compress import Recipe, StepRecord, apply_recipe
from orchestrator.deploy._errors import ExportError, QualityMismatch
from orchestrator.tasks.base import Quality, Task
from orchestrator.tasks.checkpoint import tensor_fingerprint as fingerprint


@dataclass
class Rebuilt:
    """The rebuilt candidate, the float model before quantization (if any), and what each stage did."""

    model: nn.Module
    float_model: nn.Module | None
    steps: list[StepRecord]
    quality: Quality
    teacher_fingerprint: str
    float_steps: int = 0  # how many of `steps` built the float weights

    def weight_steps(self) -> list[StepRecord]:
        """The steps that built the float weights (all of them where no stage ended the float model)."""
        return self.steps[: self.float_steps]


def resolve_device(recorded: str) -> torch.device:
    """The device the trial compressed on; a CUDA trial needs a GPU here too."""
    device = torch.device(recorded)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExportError(
            f"the trial compressed its model on {recorded}, and this machine has no CUDA GPU: "
            "export it on a machine with a GPU (the rebuild must run where the trial ran to reproduce it)"
        )
    return device


def rebuild(task: Task, recipe: Recipe, device: str = "cpu", threads: int | None = None, serving_batch_size: int = 64) -> Rebuilt:
    """Apply the recipe's stages to a copy of the task's teacher; evaluate the result on the val split."""
    dev = resolve_device(device)
    teacher = task.teacher().eval()
    teacher_fp = fingerprint(teacher)
    with torch_threads(threads):
        compressed = apply_recipe(
            task, recipe, device=dev, teacher=teacher, serving_batch_size=serving_batch_size, keep_float_model=True
        )
        quality = task.evaluate(compressed.model, "val")
    steps = compressed.record.steps
    return Rebuilt(
        model=compressed.model, float_model=compressed.float_model, steps=steps, quality=quality,
        teacher_fingerprint=teacher_fp, float_steps=compressed.float_steps if compressed.float_steps is not None else len(steps),
    )  # fmt: skip


def check_quality(rebuilt: Rebuilt, trial_value: float, tolerance: float, trial_id: str) -> None:
    """Raise QualityMismatch when the rebuilt val quality is off the trial's by more than `tolerance`."""
    value = rebuilt.quality["value"]
    if abs(value - trial_value) <= tolerance + 1e-12:
        return
    cache = os.environ.get("HEDGEROW_CACHE_DIR") or "~/.cache/hedgerow"
    if rebuilt.quality["metric"] == "log_perplexity":  # nats per token, not a fraction
        apart = f"{abs(value - trial_value):.5f} nats per token, more than the tolerance of {tolerance:.5g}"
    else:
        apart = f"{abs(value - trial_value) * 100:.2f} points, more than the tolerance of {tolerance * 100:.2f} points"
    raise QualityMismatch(
        f"trial {trial_id}: the rebuilt candidate's validation {rebuilt.quality['metric']} is {value:.4f}, "
        f"the trial measured {trial_value:.4f}: a difference of {apart}, so nothing was exported. The usual cause is "
        f"a different teacher: a teacher retrained on another machine or with another thread count is not "
        f"bit-identical. This one's fingerprint is {rebuilt.teacher_fingerprint[:16]}… (cache {cache}); "
        "export where the search ran, or with HEDGEROW_CACHE_DIR pointing at the search's teacher cache"
    )


def check_steps(rebuilt: Rebuilt, recorded_steps: list[StepRecord]) -> list[str]:
    """Differences between the rebuilt stages and the trial's record (techniques, pruned widths)."""
    problems = []
    done = [(str(s.stage), s.technique) for s in rebuilt.steps]
    want = [(str(s.stage), s.technique) for s in recorded_steps]
    if done != want:
        problems.append(f"stages {done} differ from the trial's {want}")
    for new, old in zip(rebuilt.steps, recorded_steps):
        for key in ("layer_widths", "pruning_history"):
            if key in old.details and new.details.get(key) != old.details[key]:
                problems.append(f"{new.stage}: {key} differs from the trial's record")
    return problems
