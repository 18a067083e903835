"""The `onnxruntime` runtime: the float model exported to ONNX (torch.onnx, dynamo), run by ONNX Runtime's CPU provider.

int8 is ONNX Runtime's own: `quantize_static` (QDQ, per-channel weights, calibrated on the
task's calibration batches) for models with convolutions, or `quantize_dynamic` (per-channel)
for Linear-only models such as transformers. Both keep int8 weights to 7 bits (`reduce_range`):
on x86 CPUs without VNNI, ONNX Runtime's u8s8 kernels add pairs of products in int16 with
saturation, which full-range weights overflow (bench/ort_int8_cpus.py measured logits off by
1.9 on an emulated AVX2 CPU against 0.10 with VNNI); 7-bit weights give the same outputs on
every CPU the program can be priced on, at the same speed where VNNI is present.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from orchestrator.errors import first_line
from orchestrator.runtimes.graph_export import export_args, quiet
from orchestrator.runtimes.base import ExportView, Runtime, RuntimeFailed, SavedProgram, judge_saved, runtime_step, served_outputs
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs
from orchestrator.techniques import Context, Stage, StepRecord, TechniqueConfig, count_params, int8_mode

ONNX_FILE = "model.onnx"
ONNX_INT8_NAME = "model.int8.onnx"
ONNXRUNTIME_ARCHS = ["x86_64", "arm64"]  # ONNX Runtime's CPU provider (MLAS) ships int8 and float kernels for both


class OnnxRuntimeConfig(TechniqueConfig):
    """Serve with ONNX Runtime (CPU provider); int8 by its own quantizer, static QDQ or dynamic."""

    stage = Stage.RUNTIME
    keeps_float_weights = False
    int8: Literal["none", "auto", "static", "dynamic"] = "none"
    calibration_batches: int = Field(8, ge=1)
    calibration_batch_size: int = Field(64, ge=1)


class OnnxModule(nn.Module):
    """An ONNX file under ONNX Runtime's CPU provider, callable like a module (so a task can evaluate it).

    `inspect_module`, where given, is the float model it was exported from: torch counts its
    parameters and activations, which ONNX Runtime's arena does not expose.
    """

    def __init__(self, path: Path, threads: int | None = None, inspect_module: nn.Module | None = None,
                 graph_optimization: str = "all") -> None:  # fmt: skip
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.session = ort.InferenceSession(str(self.path), self._options(), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        if inspect_module is not None:
            self.inspect_module = inspect_module

    def _options(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        return options

    def forward(self, x: torch.Tensor | None = None, **named: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, feeds(self.input_names, x if x is not None else named))[0])

    def files(self) -> list[Path]:
        """The ONNX file and any external-data files beside it."""
        return sorted(p for p in self.path.parent.iterdir() if p.is_file())

    def weights_nbytes(self) -> int:
        """Bytes of the program on disk (its weights dominate; int8 weights at one byte each)."""
        return sum(p.stat().st_size for p in self.files())

    def param_counts(self) -> tuple[int, int]:
        """(parameters, nonzero) of the float model it was exported from (ONNX Runtime does not expose its own)."""
        return count_params(self.inspect_module)


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


def export_onnx(model: nn.Module, inputs: Inputs, path: Path, sequence_inputs: tuple[str, ...] = ()) -> str:
    """Export a float model with torch.onnx (dynamo) to `path`; returns what it wrote. Raises on failure."""
    with quiet():
        args, kwargs, dynamic = export_args(inputs, sequence_inputs)
        exported = torch.onnx.export(model.float().eval(), args, kwargs=kwargs, dynamic_shapes=dynamic, dynamo=True, verbose=False)
        exported.save(str(path))
    return "ONNX (torch.onnx dynamo exporter), dynamic batch" + (" and sequence length" if sequence_inputs else "")


def quantize_onnx(source: Path, dest: Path, mode: str, calibration: list[Inputs], per_channel: bool = True,
                  reduce_range: bool = True) -> str:  # fmt: skip
    """ONNX Runtime int8 of an ONNX file: static QDQ calibrated on `calibration`, or dynamic; returns how."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with quiet():
        if mode == "dynamic":
            quantize_dynamic(str(source), str(dest), per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8)
            return (
                f"quantize_dynamic ({'per-channel' if per_channel else 'per-tensor'} int8 weights"
                f"{', reduce_range' if reduce_range else ''}; embedding tables too)"
            )
        import onnx

        input_names = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._batches = iter(calibration)

            def get_next(self) -> dict[str, np.ndarray] | None:
                batch = next(self._batches, None)
                return None if batch is None else feeds(input_names, batch)

        quantize_static(
            str(source), str(dest), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
            reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
    return (
        f"quantize_static (QDQ, {'per-channel' if per_channel else 'per-tensor'} int8 weights"
        f"{', reduce_range' if reduce_range else ''}, uint8 activations calibrated on {len(calibration)} batches)"
    )


def onnxruntime_session(model: nn.Module, config: OnnxRuntimeConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Export the float model to ONNX, quantize it with ONNX Runtime when asked, and open an InferenceSession on it."""
    import onnxruntime

    if ctx.device.type != "cpu":
        raise RuntimeFailed(f"runtime 'onnxruntime': Hedgerow runs ONNX Runtime's CPU provider only; this trial runs on {ctx.device}")
    model = model.cpu().eval()
    folder = Path(tempfile.mkdtemp(prefix="hedgerow-ort-"))
    float_dir, int8_dir = folder / "float", folder / "int8"
    float_dir.mkdir()
    mode = config.int8 if config.int8 == "none" else int8_mode(config.int8, model, ctx.task.sequence_inputs)
    example = ctx.task.example_batch(max(2, min(ctx.serving_batch_size, 8)))
    try:
        how = export_onnx(model, example, float_dir / ONNX_FILE, ctx.task.sequence_inputs)
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeFailed(f"runtime 'onnxruntime': torch.onnx.export failed on this model ({first_line(exc)})") from exc
    path = float_dir / ONNX_FILE
    if mode != "none":
        int8_dir.mkdir()
        calibration = ctx.task.calibration_batches(config.calibration_batches, config.calibration_batch_size) if mode == "static" else []
        try:
            how += "; int8 by ONNX Runtime " + quantize_onnx(path, int8_dir / ONNX_FILE, mode, calibration)
        except Exception as exc:  # noqa: BLE001
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeFailed(f"runtime 'onnxruntime': ONNX Runtime quantize_{mode} failed ({first_line(exc)})") from exc
        shutil.rmtree(float_dir)
        path = int8_dir / ONNX_FILE
    threads = torch.get_num_threads()
    try:
        started = time.perf_counter()
        module = OnnxModule(path, threads=threads, inspect_module=model)
        module(ctx.task.example_batch(ctx.serving_batch_size))
        startup = time.perf_counter() - started
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeFailed(f"runtime 'onnxruntime': ONNX Runtime could not run the exported model ({first_line(exc)})") from exc
    weakref.finalize(module, shutil.rmtree, folder, True)  # the temporary files live as long as the session
    details = {
        "onnxruntime": onnxruntime.__version__,
        "int8": mode,
        "how": how,
        "threads": threads,
        "graph_optimization": module.graph_optimization,
        "kernel_archs": list(ONNXRUNTIME_ARCHS),
        "artifact_size_bytes": module.weights_nbytes(),
        "startup_seconds": round(startup, 3),
        "startup_method": f"InferenceSession from the file + first batch of {ctx.serving_batch_size}",
        "accelerated": True,
    }
    technique = "onnxruntime" if mode == "none" else f"onnxruntime_int8_{mode}"
    return module, StepRecord.of(config, technique, details=details)


class OnnxRuntime(Runtime):
    """ONNX Runtime's CPU provider on the float model exported to ONNX; int8 by ONNX Runtime's own quantizer."""

    name = "onnxruntime"
    label = "ONNX Runtime"
    aliases = ("onnx",)
    cpu_only = "ONNX Runtime's CPU provider"
    program_formats = ("onnx_int8_qdq", "onnx_int8_dynamic", "onnx")
    build_cost = 1  # an ONNX export, and for int8 ONNX Runtime's quantizer
    handlers = {OnnxRuntimeConfig: onnxruntime_session}

    def stages(self, bits: int) -> list[TechniqueConfig]:
        """One stage: export, quantize (int8 for bits 8) and open a session."""
        return [OnnxRuntimeConfig(int8="auto" if bits == 8 else "none")]

    def quantizes_int8(self) -> bool:
        """ONNX Runtime quantizes its own graph: int8 is part of its stage."""
        return True

    def save(self, served: nn.Module, steps: list[StepRecord], task: Task, inputs: Inputs, out_dir: Path, *,
             batch_size: int) -> SavedProgram:  # fmt: skip
        """Copy the ONNX file the trial served into the export, open it again and judge it on val."""
        import onnxruntime

        step = runtime_step(self.name, served, OnnxModule, steps)
        reference = served_outputs(served, inputs, batch_size)
        mode = step.details.get("int8", "none")
        fmt = {"none": "onnx", "static": "onnx_int8_qdq", "dynamic": "onnx_int8_dynamic"}[mode]
        files = served.files()
        name = ONNX_FILE if mode == "none" or len(files) > 1 else ONNX_INT8_NAME  # external data keeps the name it was written with
        for source in files:
            shutil.copyfile(source, out_dir / (name if source == served.path else source.name))
        module = OnnxModule(out_dir / name, threads=served.threads, graph_optimization=served.graph_optimization)
        diff, quality = judge_saved(module, reference, task, inputs, batch_size)
        settings = {
            "provider": "CPUExecutionProvider", "int8": mode, "graph_optimization": served.graph_optimization,
            "intra_op_num_threads": served.threads, "how": step.details.get("how"), "kernel_archs": step.details.get("kernel_archs"),
        }  # fmt: skip
        reason = f"the ONNX Runtime program the trial served: {step.details.get('how', 'ONNX')}; loaded back, within {diff:.2g} of it on the val split"
        return SavedProgram(format=fmt, file=name, reason=reason, library="onnxruntime", version=onnxruntime.__version__,
                            max_abs_diff=diff, quality=quality, settings=settings)  # fmt: skip

    def load(self, export: ExportView, device: torch.device) -> nn.Module:
        """model.int8.onnx (int8 candidates) or model.onnx under ONNX Runtime, after refusing unverified external data."""
        _, name = export.program_file(self.program_formats)
        export.check_file(name)
        return OnnxModule(export.root / name)

