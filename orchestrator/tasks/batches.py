"""Model inputs as the engine sees them: one tensor, or a mapping of named tensors, batched along dimension 0.

A transformer takes `input_ids` and `attention_mask`; a CNN takes one image tensor.
Everything that slices, batches, moves or feeds inputs (the Task's own helpers,
distillation, calibration, measurement) goes through these functions, so the engine
never looks inside a batch.
"""

from __future__ import annotations

import math
from typing import Mapping, Union

import torch
from torch import nn

Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def tensors(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    """The tensors of a batch (one, or each named one in key order)."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    return tuple(inputs[key] for key in sorted(inputs))


def batch_size(inputs: Inputs) -> int:
    """Examples in a batch; every named tensor must agree."""
    sizes = {len(t) for t in tensors(inputs)}
    if len(sizes) != 1:
        raise ValueError(f"the named inputs disagree on the batch size: {sorted(sizes)}")
    return sizes.pop()


def take(inputs: Inputs, index: slice | torch.Tensor) -> Inputs:
    """The examples at `index` (a slice or index tensor) of every tensor."""
    if isinstance(inputs, torch.Tensor):
        return inputs[index]
    return {key: value[index] for key, value in inputs.items()}


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    """The batch on `device`."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device)
    return {key: value.to(device) for key, value in inputs.items()}


def repeat_to(inputs: Inputs, n: int) -> Inputs:
    """`n` examples: the batch repeated along dimension 0 as needed, then cut."""
    reps = math.ceil(n / batch_size(inputs))

    def one(t: torch.Tensor) -> torch.Tensor:
        return t.repeat(reps, *([1] * (t.dim() - 1)))[:n].contiguous()

    return one(inputs) if isinstance(inputs, torch.Tensor) else {k: one(v) for k, v in inputs.items()}


def run(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """The model's output: `model(x)` for a tensor, `model(**inputs)` for named tensors."""
    return model(inputs) if isinstance(inputs, torch.Tensor) else model(**inputs)


def nbytes(inputs: Inputs) -> int:
    """Bytes the batch's tensors hold."""
    return sum(t.numel() * t.element_size() for t in tensors(inputs))


def describe(inputs: Inputs) -> dict[str, list[int]] | list[int]:
    """Shapes, for keys and messages: a list for a tensor, {name: shape} for named tensors."""
    if isinstance(inputs, torch.Tensor):
        return list(inputs.shape)
    return {key: list(value.shape) for key, value in sorted(inputs.items())}
