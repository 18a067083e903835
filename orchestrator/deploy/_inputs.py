"""The one check of a batch of named inputs against the manifest, for `load(...).predict` and the Serve app alike."""

from __future__ import annotations

from typing import Mapping

import torch

from orchestrator.deploy.manifest import InputSpec
from orchestrator.tasks.batches import batch_size


def check_named_batch(batch: Mapping[str, torch.Tensor], specs: Mapping[str, InputSpec]) -> int:
    """N, once every input is (N, *spec.shape), shorter along its variable_dims, else ValueError naming the input."""
    for name, spec in specs.items():
        shape = tuple(batch[name].shape)
        if not shape or not spec.fits(shape[1:]):
            dims = ", ".join(str(d + 1) for d in spec.variable_dims)
            up_to = f" (dimensions {dims} may be shorter)" if spec.variable_dims else ""
            raise ValueError(f"input {name!r}: expected (N, {', '.join(map(str, spec.shape))}){up_to}, got {shape}")
    lengths = {name: tuple(batch[name].shape[d + 1] for d in spec.variable_dims) for name, spec in specs.items() if spec.variable_dims}
    if len(set(lengths.values())) > 1:  # a sequence's ids and mask: shorter, but all alike
        got = ", ".join(f"{name} {list(n)}" for name, n in sorted(lengths.items()))
        raise ValueError(f"the inputs of variable length disagree on it: {got}")
    return batch_size(batch)
