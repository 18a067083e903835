"""Runnable programs of a candidate: torch.export (.pt2) and ONNX (fp32, or ONNX Runtime int8 QDQ).

Each is written where the candidate's format allows, then loaded back and run
on the val split: a program that does not reproduce the model is recorded
with its difference, and a format that does not fit says why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from orchestrator.deploy.manifest import Program
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs, run, take

log = logging.getLogger(__name__)
PT2_NAME = "model.pt2"
ONNX_NAME = "model.onnx"
ONNX_INT8_NAME = "model.int8.onnx"
HALF_ONNX_REASON = (
    "not written: ONNX Runtime's CPU provider has few bf16/fp16 kernels, so a 16-bit ONNX graph would run "
    "slower than, or differently from, what the trial measured; the .pt2 program runs it as measured"
)


def _export_args(inputs: Inputs, sequence_inputs: tuple[str, ...] = ()) -> tuple[tuple, dict, Any]:
    """(args, kwargs, dynamic_shapes) for exporting with a dynamic batch (and sequence, for the task's sequence inputs)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    example = take(inputs, slice(0, 2))
    if isinstance(example, torch.Tensor):
        return (example,), {}, ({0: batch},)
    longest = max((example[n].shape[1] for n in sequence_inputs if n in example), default=2)
    sequence = torch.export.Dim("sequence", min=2, max=max(longest, 3))
    return (), dict(example), {name: ({0: batch, 1: sequence} if name in sequence_inputs else {0: batch}) for name in example}


@contextlib.contextmanager
def _quiet():
    """torch.onnx and ONNX Runtime print progress lines; keep the CLI's output to what it reports."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # ONNX Runtime's quantizer logs advice on the root logger
        try:
            yield
        finally:
            logging.disable(previous)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.shape == b.shape else float("inf")


def torch_export_program(
    model: nn.Module, inputs: Inputs, reference: torch.Tensor, out_dir: Path, sequence_inputs: tuple[str, ...] = ()
) -> Program:
    """model.pt2 with a dynamic batch dimension (and sequence length), loaded back and checked against the model's outputs."""
    path = out_dir / PT2_NAME
    try:
        with _quiet():
            args, kwargs, dynamic = _export_args(inputs, sequence_inputs)
            program = torch.export.export(model, args, kwargs=kwargs, dynamic_shapes=dynamic)
            torch.export.save(program, str(path))
            loaded = torch.export.load(str(path)).module()
            with torch.inference_mode():
                outputs = run(loaded, inputs)
    except Exception as exc:  # noqa: BLE001  (any exporter failure means "no program", with its reason)
        path.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return Program(
            format="torch_export",
            written=False,
            reason=f"not written: torch.export failed ({type(exc).__name__}: {reason})",
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
            "the task's architecture instead (runtime 'torch'), and model.int8.onnx is a standalone int8 program"
        ),
    )


def onnx_program(
    model: nn.Module, inputs: Inputs, out_dir: Path, name: str = ONNX_NAME, sequence_inputs: tuple[str, ...] = ()
) -> tuple[Path | None, str]:
    """Export a float model with torch.onnx (dynamo); returns (path or None, reason)."""
    path = out_dir / name
    try:
        with _quiet():
            args, kwargs, dynamic = _export_args(inputs, sequence_inputs)
            exported = torch.onnx.export(
                model.float().eval(), args, kwargs=kwargs, dynamic_shapes=dynamic, dynamo=True, verbose=False
            )
            exported.save(str(path))
    except Exception as exc:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return None, f"not written: torch.onnx.export failed ({type(exc).__name__}: {str(exc).strip()[:300]})"
    return path, "ONNX (torch.onnx dynamo exporter), dynamic batch" + (" and sequence length" if sequence_inputs else "")


class OnnxModule(nn.Module):
    """An ONNX file under ONNX Runtime's CPU provider, callable like a module (so a task can evaluate it)."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_name = self.input_names[0]

    def forward(self, x: torch.Tensor | None = None, **named: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, feeds(self.input_names, x if x is not None else named))[0])


def feeds(input_names: list[str], batch: Inputs) -> dict[str, np.ndarray]:
    """ONNX Runtime's input dict for a batch: one tensor for a one-input graph, else the named tensors it asks for."""
    def array(t: torch.Tensor) -> np.ndarray:
        t = t.detach().cpu().contiguous()
        return (t.float() if t.is_floating_point() else t).numpy()

    if isinstance(batch, torch.Tensor):
        return {input_names[0]: array(batch)}
    missing = [n for n in input_names if n not in batch]
    if missing:
        raise ValueError(f"the ONNX program expects inputs {input_names}; missing {missing}")
    return {name: array(batch[name]) for name in input_names}


def onnx_fp32_program(
    model: nn.Module, task: Task, inputs: Inputs, reference: torch.Tensor, out_dir: Path
) -> Program:
    """model.onnx for a float32 candidate, checked against its outputs under ONNX Runtime."""
    path, reason = onnx_program(model, inputs, out_dir, sequence_inputs=task.sequence_inputs)
    if path is None:
        return Program(format="onnx", written=False, reason=reason)
    module = OnnxModule(path)
    with torch.inference_mode():
        outputs = run(module, inputs)
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
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if dynamic:
        def quantize(source: Path, dest: Path) -> None:
            quantize_dynamic(str(source), str(dest), per_channel=True, weight_type=QuantType.QInt8)

        return _onnx_int8(
            float_model, task, inputs, out_dir, "onnx_int8_dynamic", "quantize_dynamic", quantize,
            "ONNX Runtime int8 (dynamic, per-channel weights; it also stores embedding tables in int8): a separate "
            "int8 program that runs on x86 and arm64",
        )  # fmt: skip

    def quantize(source: Path, dest: Path) -> None:
        import onnx

        input_names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._batches = iter(calibration)

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self._batches, None)
                return None if batch is None else feeds(input_names, batch)

        quantize_static(
            str(source),
            str(dest),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,  # without it ONNX Runtime's int8 lost ~0.8 points on this CPU (FIELD-NOTES)
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )

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
        with _quiet():
            quantize(float_path, path)
    except Exception as exc:  # noqa: BLE001
        path.unlink(missing_ok=True)
        return Program(
            format=fmt, written=False, reason=f"not written: ONNX Runtime {quantizer} failed ({type(exc).__name__}: {exc})"
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
