"""A built candidate's cold start: recorded while its runtime built it, or timed on a fresh copy."""

from __future__ import annotations

import copy
import time
from typing import Any, Iterable

import torch

from orchestrator.tasks.batches import run
from orchestrator.techniques import Stage, StepRecord
from orchestrator.techniques.details import RuntimeDetails


def startup_seconds(model: Any, steps: Iterable[StepRecord], batch: Any) -> tuple[float, str]:
    """(seconds, how) from a runtime's program to its first served batch: recorded at build for compiled and
    onnxruntime; for eager, the first batch of a fresh copy of the module (nothing to compile)."""
    for step in (s for s in steps if s.stage is Stage.RUNTIME):
        details = RuntimeDetails.of(step)
        if details.startup_seconds is not None:
            return float(details.startup_seconds), str(details.startup_method or "measured while building")
    fresh = copy.deepcopy(model)
    started = time.perf_counter()
    with torch.inference_mode():
        run(fresh, batch)
    return time.perf_counter() - started, "first batch of a fresh copy of the eager module (nothing to compile)"
