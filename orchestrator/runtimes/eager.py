"""The `eager` runtime: the compressed torch module itself, run eagerly; its program is the exported weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from orchestrator.runtimes.base import ExportView, Runtime, SavedProgram
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs
from orchestrator.techniques import StepRecord, TechniqueConfig


class EagerRuntime(Runtime):
    """Eager PyTorch: no stage of its own; every bit width; exported as safetensors weights loaded into the task's architecture."""

    name = "eager"
    label = "eager PyTorch"
    aliases = ("torch",)
    bits = (32, 16, 8, 4)
    loads_anywhere = True
    build_cost = 0

    def stages(self, bits: int) -> list[TechniqueConfig]:
        """None: the compressed module is what it serves."""
        return []

    def save(self, served: nn.Module, steps: list[StepRecord], task: Task, inputs: Inputs, out_dir: Path, *,
             batch_size: int) -> SavedProgram | None:  # fmt: skip
        """Nothing beyond the weights export writes for every runtime."""
        return None

    def load(self, export: ExportView, device: torch.device) -> nn.Module:
        """The safetensors weights in the task's architecture (needs the task importable)."""
        return export.weights().to(device)
