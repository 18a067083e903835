"""Request bodies for the load test, shaped as the Serve app takes them, from the task's own validation examples.

The cost model counts a request as one example (replicas = peak requests/s ÷ samples/s one replica sustains) and Serve
assembles the serving batch from concurrent requests, so a body holds one example by default; --examples-per-request
puts more in each (the arrival rate then drops by as much, so samples/s stay the promised ones). Text exports get the
task's val texts, tensor exports its val inputs, named-input exports each named tensor.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from orchestrator.deploy.manifest import Manifest
from orchestrator.errors import InputError

MAX_BODIES = 256  # distinct bodies the generator cycles through


def shape_bodies(examples: Any, examples_per_request: int, max_bodies: int = MAX_BODIES) -> list[dict[str, Any]]:
    """Bodies of `examples_per_request` consecutive examples each: {"inputs": [...]} for texts (a list of strings) or a
    tensor (N, *shape), {"inputs": {name: [...]}} for named tensors; InputError where there are fewer examples than one body."""
    if examples_per_request < 1:
        raise InputError(f"--examples-per-request: expected at least 1, got {examples_per_request}")
    if isinstance(examples, dict):
        n = len(next(iter(examples.values())))
    elif isinstance(examples, (torch.Tensor, list, tuple)):
        n = len(examples)
    else:
        raise TypeError(f"expected texts, a tensor or named tensors, got {type(examples).__name__}")
    count = min(max_bodies, n // examples_per_request)
    if count == 0:
        raise InputError(
            f"--examples-per-request: {examples_per_request} examples per request, but the task's val split has {n}"
        )
    bodies = []
    for j in range(count):
        part = slice(j * examples_per_request, (j + 1) * examples_per_request)
        if isinstance(examples, dict):
            bodies.append({"inputs": {name: tensor[part].tolist() for name, tensor in examples.items()}})
        elif isinstance(examples, torch.Tensor):
            bodies.append({"inputs": examples[part].tolist()})
        else:
            bodies.append({"inputs": list(examples[part])})
    return bodies


def val_examples(manifest: Manifest) -> Sequence[str] | torch.Tensor | dict[str, torch.Tensor]:
    """The export's task's val split, as the export's endpoint takes it: texts where it takes text, else the tensors."""
    from orchestrator.tasks.registry import load_task

    task = load_task(manifest.task.name, manifest.task.args, field="manifest.json task.name")
    if manifest.architecture.text is not None:
        texts = getattr(task, "texts", None)
        if not callable(texts):
            raise InputError(
                f"manifest.json task.name: task {manifest.task.name!r} takes text but has no texts(split) to draw request bodies from"
            )
        return list(texts("val"))
    inputs, _ = task.data("val")
    return inputs


def request_bodies(manifest: Manifest, examples_per_request: int = 1, max_bodies: int = MAX_BODIES) -> list[dict[str, Any]]:
    """Bodies for the export's endpoint, from its task's val split (see the module's docstring)."""
    return shape_bodies(val_examples(manifest), examples_per_request, max_bodies)
