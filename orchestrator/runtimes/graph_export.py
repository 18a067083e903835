"""Example inputs with dynamic dimensions for torch.export and torch.onnx, and a quiet context."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any

import torch

from orchestrator.tasks.batches import Inputs, take


def export_args(inputs: Inputs, sequence_inputs: tuple[str, ...] = ()) -> tuple[tuple, dict, Any]:
    """(args, kwargs, dynamic_shapes) for exporting with a dynamic batch (and sequence, for the task's sequence inputs)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example = take(inputs, slice(0, 2))
    if isinstance(example, torch.Tensor):
        return (example,), {}, ({0: batch},)
    longest = max((example[n].shape[1] for n in sequence_inputs if n in example), default=2)
    sequence = torch.export.Dim("sequence", min=2, max=max(longest, 3))
    return (), dict(example), {name: ({0: batch, 1: sequence} if name in sequence_inputs else {0: batch}) for name in example}


@contextlib.contextmanager
def quiet():
    """torch.onnx and ONNX Runtime print progress lines; keep the CLI's output to what it reports."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # ONNX Runtime's quantizer logs advice on the root logger
        try:
            yield
        finally:
            logging.disable(previous)
