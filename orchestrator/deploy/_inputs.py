"""The one check of a batch of named inputs against the manifest, for `load(...).predict` and the Serve app alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import torch

from orchestrator.tasks.batches import batch_size

if TYPE_CHECKING:
    from orchestrator.deploy.manifest import InputSpec


def check_named_batch(batch: Mapping[str, torch.Tensor], specs: Mapping[str, "InputSpec"]) -> int:
    """N, once every input is (N, *spec.shape), shorter along its variable_dims, else ValueError naming the input."""
    for name, spec in specs.items():
        shape = tuple(batch[name].shape)
        if not shape or not spec.fits(shape[1:]):
            dims = ", ".join(str(d + 1) for d in spec.variable_dims)
            up_to = f" (dimensions {dims} may be shorter)" if spec.variable_dims else ""
            raise ValueError(f"input {name!r}: expected (N, {', '.join(map(str, spec.shape))}){up_to}, got {shape}")
    return batch_size(batch)
