"""What a serving runtime is: the plug point every runtime (eager, compiled, onnxruntime, ...) implements.

Call order: the recipe asks `stages(bits)` for the stages that build a candidate on the
runtime (applied last, through the technique registry); after the build, `kernel_archs(steps)`
reads back the CPU architectures those stages recorded; export calls `save(...)` to write the
program the trial served into the export folder; the loader calls `load(...)` to run it again.
A new runtime is one module with a `Runtime` subclass, plus one line in `runtimes/__init__.py`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from orchestrator.techniques.details import QuantizeDetails, RuntimeDetails
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs, run_in_chunks
from orchestrator.techniques import Handler, Stage, StepRecord, TechniqueConfig

BIT_NAMES = {32: "float32", 16: "16-bit", 8: "int8", 4: "int4"}


class RuntimeFailed(RuntimeError):
    """A runtime could not build or run a candidate here (no C++ compiler, an export that fails): the trial fails with this."""


@runtime_checkable
class ServedProgram(Protocol):
    """What measure and export need from a module a runtime serves, besides calling it."""

    inspect_module: nn.Module  # the eager program torch can analyse (activations, FLOPs)

    def files(self) -> list[Path]:
        """The files the program runs from ([] where it lives in memory only)."""

    def param_counts(self) -> tuple[int, int]:
        """(parameters, nonzero parameters), counted on the float model where the program's weights are constants."""

    def weights_nbytes(self) -> int:
        """Bytes of the weights the program holds (int8 weights at one byte each)."""


@dataclass
class SavedProgram:
    """What a runtime wrote into an export: its program file, how it was judged, and how to serve it the same way."""

    format: str
    file: str
    reason: str
    library: str
    version: str | None
    max_abs_diff: float | None = None
    quality: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportView:
    """What a runtime's loader may read from a verified export folder (given by the deploy package)."""

    root: Path
    program_file: Callable[[tuple[str, ...]], tuple[str, str]]  # (format, file) of the written program among these formats
    settings: dict[str, Any]  # the serving runtime's recorded settings ({} for older exports)
    example: Callable[[int], Inputs]  # n example inputs shaped as the export takes them
    weights: Callable[[], nn.Module]  # the safetensors weights in the task's architecture
    check_file: Callable[[str], None] = lambda name: None  # refuse a program reading unverified files
    check_listed: Callable[[str], None] = lambda name: None  # refuse a file the manifest does not list (so was not verified)


class Runtime(abc.ABC):
    """A way to serve a candidate, from its build stages to loading its exported program back."""

    name: ClassVar[str]  # the one name, in recipes, manifests, reports and `load(runtime=...)`
    label: ClassVar[str]  # as a reader knows it: "ONNX Runtime"
    aliases: ClassVar[tuple[str, ...]] = ()  # older names still accepted (old manifests, `load(runtime="onnx")`)
    bits: ClassVar[tuple[int, ...]] = (32, 8)  # bit widths it serves
    cpu_only: ClassVar[str | None] = None  # why it runs on the CPU only, where it does
    program_formats: ClassVar[tuple[str, ...]] = ()  # manifest program formats its loader runs
    loads_anywhere: ClassVar[bool] = False  # its program is the weights, which load on any device
    build_cost: ClassVar[int] = 100  # how dear a candidate is to build on it, relative to the others: seeds try cheap first
    handlers: ClassVar[Mapping[type, Handler]] = {}  # the handler of each config type its stages use

    @abc.abstractmethod
    def stages(self, bits: int) -> list[TechniqueConfig]:
        """The stages appended after compression for a candidate of `bits` (its own int8 stage where it quantizes itself)."""

    def check_available(self) -> None:
        """Raise an InputError naming what to install where the runtime's library is missing (checked before a search starts)."""

    def quantizes_int8(self) -> bool:
        """Whether its own stages quantize to int8 (so the recipe adds no torch int8 stage before them)."""
        return False

    def kernel_archs(self, steps: Iterable[StepRecord]) -> list[str] | None:
        """CPU architectures the built candidate's kernels run on, as its stages recorded them; None: any CPU torch runs on."""
        return recorded_kernel_archs(steps)

    @abc.abstractmethod
    def save(self, served: nn.Module, steps: list[StepRecord], task: Task, inputs: Inputs, out_dir: Path, *,
             batch_size: int) -> SavedProgram | None:  # fmt: skip
        """Write the program the trial served into `out_dir`, load it back and judge it on val (None: the weights are
        the program). Every pass over `inputs` runs `batch_size` examples at a time (`run_in_chunks`): memory follows
        the serving batch, never the split."""

    @abc.abstractmethod
    def load(self, export: ExportView, device: torch.device) -> nn.Module:
        """The exported program, ready to serve as the trial measured it."""

    def describe_bits(self) -> str:
        """The bit widths it serves, as a reader says them: 'float32 or int8 models (bits 32 or 8)'."""
        names = " or ".join(BIT_NAMES.get(b, str(b)) for b in self.bits)
        return f"{names} models (bits {' or '.join(str(b) for b in self.bits)})"


def runtime_step(runtime: str, served: nn.Module, built: type, steps: list[StepRecord]) -> StepRecord:
    """The runtime stage's record of the module a runtime built (what `save` writes); RuntimeFailed for another module."""
    if not isinstance(served, built):
        raise RuntimeFailed(f"runtime {runtime!r}: expected the {built.__name__} the trial built, got {type(served).__name__}")
    return next(s for s in steps if s.stage is Stage.RUNTIME)


def served_outputs(served: nn.Module, inputs: Inputs, batch_size: int) -> torch.Tensor:
    """What the served module computes on the val split, `batch_size` examples at a time: what its saved program is
    compared with."""
    with torch.inference_mode():
        return run_in_chunks(served, inputs, batch_size)


def judge_saved(program: nn.Module, reference: torch.Tensor, task: Task, inputs: Inputs, batch_size: int) -> tuple[float, float]:
    """(largest difference from the served module's outputs, val quality) of a program loaded back from an export."""
    with torch.inference_mode():
        outputs = run_in_chunks(program, inputs, batch_size)
    return max_abs_diff(outputs, reference), task.evaluate(program, "val")["value"]


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference between two outputs (inf where their shapes differ)."""
    return float((a.float() - b.float()).abs().max()) if a.shape == b.shape else float("inf")


def recorded_kernel_archs(steps: Iterable[StepRecord]) -> list[str] | None:
    """The CPU architectures recorded by a candidate's build steps: a runtime stage's, else its quantize stage's."""
    steps = list(steps)
    for step in (s for s in steps if s.stage is Stage.RUNTIME):
        archs = RuntimeDetails.of(step).kernel_archs
        if archs is not None:
            return list(archs)
    for step in (s for s in steps if s.stage is Stage.QUANTIZE):
        archs = QuantizeDetails.of(step).archs()
        if archs is not None:
            return archs
    return None
