"""Serving runtimes: the same compressed model run eagerly, compiled by torch.compile, under ONNX Runtime or OpenVINO.

Each runtime is one module with a `Runtime` subclass (its stages, the CPUs its kernels run on,
how it saves and loads its program), registered below: one line per runtime. Its stages are
technique configs with registered handlers, applied last by the recipe, so every candidate is
built, measured and priced on the runtime it will be served with.
"""

from orchestrator.runtimes.base import ExportView, Runtime, RuntimeFailed, SavedProgram, ServedProgram, recorded_kernel_archs
from orchestrator.runtimes.cold_start import startup_seconds
from orchestrator.runtimes.compiled import CompileConfig, CompiledModule, CompiledRuntime, Pt2eInt8Config
from orchestrator.runtimes.eager import EagerRuntime
from orchestrator.runtimes.onnx import OnnxModule, OnnxRuntime, OnnxRuntimeConfig
from orchestrator.runtimes.openvino import OpenVinoConfig, OpenVinoModule, OpenVinoRuntime
from orchestrator.runtimes.registry import RuntimeRegistry, runtime_technique

REGISTRY = RuntimeRegistry()
REGISTRY.add(EagerRuntime())
REGISTRY.add(CompiledRuntime())
REGISTRY.add(OnnxRuntime())
REGISTRY.add(OpenVinoRuntime())
RUNTIME_KNOB = runtime_technique(REGISTRY)  # the `runtime` knob, registered with the techniques by compress
kernel_archs = recorded_kernel_archs  # CPU architectures a built candidate's kernels run on, as its stages recorded them


__all__ = [
    "REGISTRY", "RUNTIME_KNOB", "CompileConfig", "CompiledModule", "CompiledRuntime", "EagerRuntime", "ExportView",
    "OnnxModule", "OnnxRuntime", "OnnxRuntimeConfig", "OpenVinoConfig", "OpenVinoModule", "OpenVinoRuntime", "Pt2eInt8Config", "Runtime", "RuntimeFailed", "RuntimeRegistry",
    "SavedProgram", "ServedProgram", "kernel_archs", "startup_seconds",
]  # fmt: skip
