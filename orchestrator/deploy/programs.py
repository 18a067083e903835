"""Runnable programs of a candidate: torch.export (.pt2) and ONNX (fp32, or ONNX Runtime int8 QDQ).

Each is written where the candidate's format allows, then loaded back and run
on the val split: a program that does not reproduce the model is recorded
with its difference, and a format that does not fit says why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from orchestrator.deploy._errors import ExportError
from orchestrator.deploy.manifest import Program, ServingRuntime
from orchestrator.errors import first_line
from orchestrator.runtimes import REGISTRY, RuntimeFailed
from orchestrator.runtimes.graph_export import export_args, quiet
from orchestrator.runtimes.base import max_abs_diff
from orchestrator.runtimes.onnx import ONNX_INT8_NAME, OnnxModule, export_onnx, quantize_onnx
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs, run_in_chunks
from orchestrator.techniques import Stage, StepRecord
from orchestrator.techniques.details import RuntimeDetails

log = logging.getLogger(__name__)
PT2_NAME = "model.pt2"
ONNX_NAME = "model.onnx"
HALF_ONNX_REASON = (
    "not written: ONNX Runtime's CPU provider has few bf16/fp16 kernels, so a 16-bit ONNX graph would run "
    "slower than, or differently from, what the trial measured; the .pt2 program runs it as measured"
)


_max_diff = max_abs_diff


def torch_export_program(
    model: nn.Module, inputs: Inputs, reference: torch.Tensor, out_dir: Path, sequence_inputs: tuple[str, ...] = (),
    *, batch_size: int,
) -> Program:
    """model.pt2 with a dynamic batch dimension (and sequence length), loaded back and checked against the model's
    outputs, `batch_size` inputs at a time."""
    path = out_dir / PT2_NAME
    try:
        with quiet():
            args, kwargs, dynamic = export_args(inputs, sequence_inputs)
            program = torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=dynamic)
            torch.export.save(program, str(path))
            loaded = torch.export.load(str(path)).module()
            with torch.inference_mode():
                outputs = run_in_chunks(loaded, inputs, batch_size)
    except Exception as exc:  # noqa: BLE001  (any exporter failure means "no program", with its reason)
        path.unlink(missing_ok=True)
        return Program(
            format="torch_export",
            written=False,
            reason=f"not written: torch.export failed ({first_line(exc)})",
        )
    diff = _max_diff(outputs, reference)
    exact = "reproduces the model's outputs exactly" if diff == 0 else f"differs from the model by up to {diff:.3g}"
    return Program(
        format="torch_export",
        file=PT2_NAME,
        written=True,
        max_abs_diff=diff,
        reason=f"torch.export program, dynamic batch{' and sequence length' if sequence_inputs else ''}; {exact} on the val split",
    )


def int8_fx_pt2_reason() -> Program:
    """Why an FX int8 model has no .pt2 program."""
    return Program(
        format="torch_export",
        written=False,
        reason=(
            "not written: torch.export cannot flatten torch.ao int8 packed parameters (FX static or dynamic); the weights load into "
            "the task's architecture instead (runtime 'eager'), and model.int8.onnx is a standalone int8 program"
        ),
    )


def onnx_program(
    model: nn.Module, inputs: Inputs, out_dir: Path, name: str = ONNX_NAME, sequence_inputs: tuple[str, ...] = ()
) -> tuple[Path | None, str]:
    """Export a float model with torch.onnx (dynamo); returns (path or None, reason)."""
    path = out_dir / name
    try:
        return path, export_onnx(model, inputs, path, sequence_inputs)
    except Exception as exc:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return None, f"not written: torch.onnx.export failed ({first_line(exc)})"


def onnx_fp32_program(
    model: nn.Module, task: Task, inputs: Inputs, reference: torch.Tensor, out_dir: Path, *, batch_size: int
) -> Program:
    """model.onnx for a float32 candidate, checked against its outputs under ONNX Runtime, `batch_size` inputs at a time."""
    path, reason = onnx_program(model, inputs, out_dir, sequence_inputs=task.sequence_inputs)
    if path is None:
        return Program(format="onnx", written=False, reason=reason)
    module = OnnxModule(path)
    with torch.inference_mode():
        outputs = run_in_chunks(module, inputs, batch_size)
    diff = _max_diff(outputs, reference)
    return Program(
        format="onnx",
        file=path.name,
        written=True,
        max_abs_diff=diff,
        quality=task.evaluate(module, "val")["value"],
        reason=f"{reason}; ONNX Runtime float32, within {diff:.2g} of the model's outputs on the val split (float kernels differ in rounding)",
    )


def onnx_int8_program(
    float_model: nn.Module, task: Task, inputs: Inputs, out_dir: Path, calibration: list[Inputs], dynamic: bool = False
) -> Program:
    """model.int8.onnx: the float model before quantization, quantized by ONNX Runtime (static QDQ, or dynamic)."""
    mode = "dynamic" if dynamic else "static"

    def quantize(source: Path, dest: Path) -> None:
        quantize_onnx(source, dest, mode, calibration)

    if dynamic:
        return _onnx_int8(
            float_model, task, inputs, out_dir, "onnx_int8_dynamic", "quantize_dynamic", quantize,
            "ONNX Runtime int8 (dynamic, per-channel 7-bit weights so that x86 CPUs without VNNI compute what VNNI ones do; it also stores embedding tables in int8): a separate "
            "int8 program that runs on x86 and arm64",
        )  # fmt: skip
    return _onnx_int8(
        float_model, task, inputs, out_dir, "onnx_int8_qdq", "quantize_static", quantize,
        "ONNX Runtime int8 (static QDQ, per-channel weights, reduce_range, calibrated on the same training "
        "batches as the torch int8 model): a separate int8 program for CPUs where torch's x86 int8 backend does not run",
    )  # fmt: skip


def _onnx_int8(
    float_model: nn.Module,
    task: Task,
    inputs: Inputs,
    out_dir: Path,
    fmt: str,
    quantizer: str,
    quantize: Any,
    what: str,
) -> Program:
    """Export the float model to ONNX, quantize it with `quantize(source, dest)`, and judge the result on val."""
    float_path, reason = onnx_program(
        float_model, inputs, out_dir, name="model.float.onnx.tmp", sequence_inputs=task.sequence_inputs
    )
    if float_path is None:
        return Program(format=fmt, written=False, reason=reason)
    path = out_dir / ONNX_INT8_NAME
    try:
        with quiet():
            quantize(float_path, path)
    except Exception as exc:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return Program(
            format=fmt, written=False, reason=f"not written: ONNX Runtime {quantizer} failed ({first_line(exc)})"
        )
    finally:
        float_path.unlink(missing_ok=True)
    quality = task.evaluate(OnnxModule(path), "val")["value"]
    return Program(
        format=fmt,
        file=path.name,
        written=True,
        quality=quality,
        reason=f"{what}; its own val quality is {quality:.4f} (its outputs are not identical to the torch int8 model's)",
    )


def runtime_program(served: nn.Module, runtime: str, steps: list[StepRecord], task: Task, inputs: Inputs,
                    out_dir: Path, *, batch_size: int) -> tuple[Program, ServingRuntime]:  # fmt: skip
    """The artifact the trial's runtime served, written by that runtime, loaded back and judged on val
    (`batch_size` inputs at a time)."""
    chosen = REGISTRY.get(runtime)
    try:
        saved = chosen.save(served, steps, task, inputs, out_dir, batch_size=batch_size)
    except RuntimeFailed as exc:
        raise ExportError(str(exc)) from exc
    if saved is None:
        raise ExportError(f"runtime {chosen.name!r}: its program is the weights; export writes them for every runtime")
    step = next((s for s in steps if s.stage is Stage.RUNTIME), None)
    program = Program(
        format=saved.format, file=saved.file, written=True, max_abs_diff=saved.max_abs_diff, quality=saved.quality,
        reason=saved.reason,
    )  # type: ignore[arg-type]  # fmt: skip
    serving = ServingRuntime(
        name=chosen.name, library=saved.library, version=saved.version, program=saved.file, loader_runtime=chosen.name,
        settings=saved.settings, startup_seconds=RuntimeDetails.of(step).startup_seconds if step else None,
    )  # fmt: skip
    return program, serving
