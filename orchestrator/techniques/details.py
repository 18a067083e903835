"""Typed views of the step details one package writes and another reads (StepRecord.details stays a dict on disk)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from orchestrator.techniques.registry import StepRecord

X86_ONLY_BACKENDS = ("x86", "fbgemm", "x86_inductor")  # torch.ao FX/dynamic int8 and the x86 inductor quantizer
D = TypeVar("D", bound="_Details")


class _Details(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    @classmethod
    def of(cls: type[D], step: StepRecord) -> D:
        """The step's details read as this type (keys another package does not read are kept, untyped)."""
        return cls.model_validate(step.details)


class QuantizeDetails(_Details):
    """What a quantize stage records: its backend, which layers it quantized, and where its kernels run."""

    backend: str | None = None
    accelerated: bool = True
    quantized_layers: list[str] = []
    float_layers: list[str] = []
    packed_size_bytes: int | None = None
    kernel_archs: list[str] | None = None

    def archs(self) -> list[str] | None:
        """CPU architectures its kernels run on, as recorded at build (None: any CPU torch runs on)."""
        return None if self.kernel_archs is None else list(self.kernel_archs)


class RuntimeDetails(_Details):
    """What a runtime stage records: where its kernels run, its cold start, and the size of the file it serves."""

    kernel_archs: list[str] | None = None
    startup_seconds: float | None = None
    startup_method: str | None = None
    artifact_size_bytes: int | None = None


class PruneDetails(_Details):
    """What a prune stage records that the recipe's summary and export read (a transformer prune: its structure)."""

    sparse_size_bytes: int | None = None
    layer_widths: dict[str, int] | None = None
    pruning_history: list[list[Any]] | None = None
    structure: dict[str, list[Any]] | None = None


def x86_only(backend: str) -> list[str] | None:
    """The kernel architectures of a torch int8 backend: x86_64 for the x86 ones, None (any) otherwise."""
    return ["x86_64"] if backend in X86_ONLY_BACKENDS else None

