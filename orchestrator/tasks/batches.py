"""Model inputs as the engine sees them: one tensor, or a mapping of named tensors, batched along dimension 0.

A transformer takes `input_ids` and `attention_mask`; a CNN takes one image tensor.
Everything that slices, batches, moves or feeds inputs (the Task's own helpers,
distillation, calibration, measurement) goes through these functions, so the engine
never looks inside a batch.

A pass over many examples (a split, a large request) goes through `run_in_chunks`:
the model sees at most one chunk at a time, so its activations, which grow with the
rows it is fed (attention scores with rows x heads x length squared), are bounded by
the chunk, never by the split. Whoever drives a long pass may watch its progress with
`watch_passes`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Iterator, Mapping, Union

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


PassWatcher = Callable[[int, int], None]  # (examples done, examples in the pass)
_watcher: contextvars.ContextVar[PassWatcher | None] = contextvars.ContextVar("hedgerow_pass_watcher", default=None)


@contextlib.contextmanager
def watch_passes(watcher: PassWatcher) -> Iterator[None]:
    """Call `watcher(done, total)` after every chunk of every chunked pass run inside the block (progress lines)."""
    token = _watcher.set(watcher)
    try:
        yield
    finally:
        _watcher.reset(token)


def report_progress(done: int, total: int) -> None:
    """Tell the watcher of the enclosing `watch_passes` block, if any, how far a chunked pass is."""
    watcher = _watcher.get()
    if watcher is not None:
        watcher(done, total)


def run_in_chunks(
    model: nn.Module,
    inputs: Inputs,
    chunk_size: int,
    device: torch.device | str | None = None,
    prepare: Callable[[Inputs], Inputs] | None = None,
) -> torch.Tensor:
    """The model's outputs for every example, `chunk_size` examples at a time, in order, as float32 on the CPU.

    Memory follows the chunk, not the number of examples: only the outputs of the whole pass are kept.
    `device`: where each chunk is moved before the model runs it (None: where it is); `prepare`: applied
    to each chunk first (e.g. dropping padding no example of the chunk uses).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    total = batch_size(inputs)
    if total == 0:
        return run(model, inputs).float().cpu()
    outputs = []
    for start in range(0, total, chunk_size):
        chunk = take(inputs, slice(start, start + chunk_size))
        if prepare is not None:
            chunk = prepare(chunk)
        if device is not None:
            chunk = to_device(chunk, device)
        outputs.append(run(model, chunk).float().cpu())
        report_progress(min(start + chunk_size, total), total)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def nbytes(inputs: Inputs) -> int:
    """Bytes the batch's tensors hold."""
    return sum(t.numel() * t.element_size() for t in tensors(inputs))


def describe(inputs: Inputs) -> dict[str, list[int]] | list[int]:
    """Shapes, for keys and messages: a list for a tensor, {name: shape} for named tensors."""
    if isinstance(inputs, torch.Tensor):
        return list(inputs.shape)
    return {key: list(value.shape) for key, value in sorted(inputs.items())}
