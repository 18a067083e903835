"""Which runtimes exist, which CPU architectures each one's kernels run on, and how a runtime failure reads."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable, Literal

if TYPE_CHECKING:  # the compress package imports this module; a runtime import would be circular
    from orchestrator.compress._registry import StepRecord

Runtime = Literal["eager", "compiled", "onnxruntime"]
RUNTIMES: tuple[str, ...] = ("eager", "compiled", "onnxruntime")
RUNTIME_BITS = (32, 8)  # bf16 and fake-quantized int4 run eagerly only (see Recipe)

# CPU architectures whose kernels a candidate's quantize backend or runtime uses (None: any torch runs on).
# torch.ao's FX/dynamic int8 and the x86 inductor quantizer lower to x86 (fbgemm/oneDNN VNNI) kernels;
# ONNX Runtime's CPU provider (MLAS) ships int8 and float kernels for both x86_64 and arm64.
X86_ONLY_BACKENDS = ("x86", "fbgemm", "x86_inductor")
ONNXRUNTIME_ARCHS = ["x86_64", "arm64"]


class RuntimeFailed(RuntimeError):
    """A runtime could not build or run a candidate here (no C++ compiler, an export that fails): the trial fails with this."""


def kernel_archs(steps: "Iterable[StepRecord]") -> list[str] | None:
    """CPU architectures a built candidate's kernels run on; None where any CPU torch supports will do."""
    steps = list(steps)
    if any(s.stage == "runtime" and s.technique.startswith("onnxruntime") for s in steps):
        return list(ONNXRUNTIME_ARCHS)
    for step in steps:
        if step.stage == "quantize" and step.details.get("backend") in X86_ONLY_BACKENDS:
            return ["x86_64"]
    return None


def startup_seconds(model: Any, steps: "Iterable[StepRecord]", batch: Any) -> tuple[float, str]:
    """(seconds, how) from a runtime's program to its first served batch: recorded at build for compiled and
    onnxruntime; for eager, the first batch of a fresh copy of the module (nothing to compile)."""
    for step in steps:
        if step.stage == "runtime" and step.details.get("startup_seconds") is not None:
            return float(step.details["startup_seconds"]), str(step.details.get("startup_method", "measured while building"))
    import copy

    import torch

    from orchestrator.tasks.batches import run

    fresh = copy.deepcopy(model)
    started = time.perf_counter()
    with torch.inference_mode():
        run(fresh, batch)
    return time.perf_counter() - started, "first batch of a fresh copy of the eager module (nothing to compile)"
