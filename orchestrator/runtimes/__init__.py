"""Serving runtimes: the same compressed model run eagerly, compiled by torch.compile, or under ONNX Runtime.

Each runtime is a technique config plus one registered function (as the
compression techniques are), applied last by the recipe, so every candidate is
built, measured and priced on the runtime it will be served with.
"""

from orchestrator.runtimes._kernels import RUNTIMES, Runtime, RuntimeFailed, kernel_archs, startup_seconds
from orchestrator.runtimes.compiled import CompileConfig, CompiledModule, Pt2eInt8Config
from orchestrator.runtimes.onnx import OnnxModule, OnnxRuntimeConfig

__all__ = [
    "RUNTIMES", "CompileConfig", "CompiledModule", "OnnxModule", "OnnxRuntimeConfig", "Pt2eInt8Config", "Runtime",
    "RuntimeFailed", "kernel_archs", "startup_seconds",
]  # fmt: skip
