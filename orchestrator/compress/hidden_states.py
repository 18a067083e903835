"""Hidden-state matching for distilling pruned transformer encoders: each kept layer's output onto the teacher's.

A student layer kept from teacher layer i (see transformer_prune's structure) is pulled
toward teacher layer i's output, over real tokens only. Head and FFN pruning keep the
hidden width, so the states compare directly.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.compress.transformer_prune import encoder_layers, structure_of


@contextmanager
def captured(layers: list[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Record each layer's output hidden states on every forward while the context is open."""
    outputs: list[torch.Tensor | None] = [None] * len(layers)

    def hook(index: int):
        def keep(module: nn.Module, args: tuple, output: object) -> None:
            outputs[index] = output[0] if isinstance(output, tuple) else output  # type: ignore[index]

        return keep

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


class HiddenStateMatch:
    """Pairs the student's layers with the teacher layers they were kept from, and scores their distance."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        self.student_layers = list(encoder_layers(student))
        teacher_layers = list(encoder_layers(teacher))
        self.teacher_layers = [teacher_layers[i] for i in structure_of(student)["kept_layers"]]

    def loss(self, student_states: list, teacher_states: list, mask: torch.Tensor | None) -> torch.Tensor:
        """Mean squared distance per real token, averaged over the paired layers."""
        losses = []
        for ours, theirs in zip(student_states, teacher_states):
            squared = F.mse_loss(ours, theirs.detach(), reduction="none").mean(dim=-1)
            if mask is not None:
                weights = mask.to(squared.dtype)
                losses.append((squared * weights).sum() / weights.sum().clamp(min=1.0))
            else:
                losses.append(squared.mean())
        return torch.stack(losses).mean()
