"""The `openvino` runtime: the float model exported to ONNX, converted to OpenVINO IR and compiled for its CPU plugin.

The IR comes from the same ONNX export the `onnxruntime` runtime serves (torch.onnx, dynamo): it
keeps a transformer's named inputs (input_ids, attention_mask) with dynamic batch and sequence
dimensions, and a CNN's one input with a dynamic batch, so both runtimes start from one graph.
int8 is NNCF's post-training quantization of that IR (`nncf.quantize`), calibrated on the task's
calibration batches; for a model fed sequences with `model_type=TRANSFORMER` (NNCF's scheme for
transformers: SmoothQuant, no quantizers on the attention softmax and layer norms). Its weights
are kept to 7 bits on every layer (`OverflowFix.ENABLE`), for the reason `onnx.py` keeps ONNX
Runtime's: u8s8 kernels on x86 CPUs without VNNI add pairs of products in int16 with saturation.
NNCF's bias correction is off by default: on the digits CNN with 8 calibration batches, its fast
bias correction shifted biases to fit the calibration set, lowering val accuracy from 0.774 to
0.747 and changing the class of items whose float margin exceeds int8's rounding; without it the
int8 program rounds and nothing more (0.774, tests/runtimes/test_openvino.py holds it to that).
The program is compiled with one inference thread per torch thread of the trial (as ONNX Runtime's
intra_op_num_threads), a latency hint, and float32 inference precision, so a float candidate
computes what torch computes, not bf16 on a CPU that has it.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from orchestrator.errors import first_line
from orchestrator.runtimes.graph_export import quiet
from orchestrator.runtimes.base import ExportView, Runtime, RuntimeFailed, SavedProgram, judge_saved, runtime_step, served_outputs
from orchestrator.runtimes.onnx import ONNX_FILE, export_onnx, feeds
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs
from orchestrator.tasks.text.encoder import MissingExtra
from orchestrator.techniques import Context, Stage, StepRecord, TechniqueConfig, count_params

INSTALL_HINT = "pip install 'hedgerow[openvino]'"
IR_FILE, IR_INT8_FILE = "model.xml", "model.int8.xml"  # each with its weights beside it: model.bin, model.int8.bin
# OpenVINO's CPU device runs float32 on Intel x86-64 and Arm; its quantized (int8) data types are listed for x86-64
# only ("CPU Device", https://docs.openvino.ai/2024/openvino-workflow/running-inference/inference-devices-and-modes/
# cpu-device.html, "Supported Model Precision"), so an int8 IR is priced on x86-64 instances only.
OPENVINO_ARCHS = {False: ["x86_64", "arm64"], True: ["x86_64"]}
PRECISION = "f32"


class OpenVinoConfig(TechniqueConfig):
    """Serve with OpenVINO's CPU plugin; int8 by NNCF's post-training quantization, calibrated on the task's batches."""

    stage = Stage.RUNTIME
    keeps_float_weights = False
    int8: bool = False
    bias_correction: bool = False  # NNCF's (fast) bias correction after quantizing; see the module's docstring
    calibration_batches: int = Field(8, ge=1)
    calibration_batch_size: int = Field(64, ge=1)


def require_openvino() -> Any:
    """The `openvino` module, or a MissingExtra naming the extra to install."""
    if importlib.util.find_spec("openvino") is None:
        raise MissingExtra(f"runtime 'openvino' needs the 'openvino' extra, which is not installed: run {INSTALL_HINT}")
    import openvino

    return openvino


def require_nncf() -> Any:
    """The `nncf` module (OpenVINO int8), or a MissingExtra naming the extra to install."""
    if importlib.util.find_spec("nncf") is None:
        raise MissingExtra(f"int8 on runtime 'openvino' needs NNCF from the 'openvino' extra, which is not installed: run {INSTALL_HINT}")
    with quiet():  # NNCF logs its backend choices when imported
        import nncf
    nncf.set_log_level(logging.ERROR)
    return nncf


def compile_config(threads: int | None) -> dict[str, Any]:
    """The CPU plugin's settings for a trial: its thread count, a latency hint, float32 precision, no core pinning.

    Pinning is off because trials run side by side: each OpenVINO process would pin its threads to the
    same first cores and time the others' work (ONNX Runtime and torch leave placement to the OS too).
    """
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": PRECISION, "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class OpenVinoModule(nn.Module):
    """An OpenVINO IR (.xml + .bin) compiled for the CPU plugin, callable like a module (so a task can evaluate it).

    `inspect_module`, where given, is the float model it was converted from: torch counts its
    parameters and activations, which OpenVINO does not expose.
    """

    def __init__(self, path: Path, threads: int | None = None, inspect_module: nn.Module | None = None) -> None:
        super().__init__()
        ov = require_openvino()
        self.path = Path(path)
        self.threads = threads
        core = ov.Core()
        model = core.read_model(str(self.path), str(self.weights_path))
        self.compiled = core.compile_model(model, "CPU", compile_config(threads))
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        if inspect_module is not None:
            self.inspect_module = inspect_module

    @property
    def weights_path(self) -> Path:
        """The .bin beside the .xml: the weights the IR's constants point into."""
        return self.path.with_suffix(".bin")

    def forward(self, x: torch.Tensor | None = None, **named: torch.Tensor) -> torch.Tensor:
        outputs = self.compiled(feeds(self.input_names, x if x is not None else named))
        return torch.from_numpy(np.array(outputs[self.compiled.output(0)], copy=True))

    def files(self) -> list[Path]:
        """The IR's two files: the graph (.xml) and its weights (.bin)."""
        return [self.path, self.weights_path]

    def weights_nbytes(self) -> int:
        """Bytes of the program on disk (its weights dominate; int8 weights at one byte each)."""
        return sum(p.stat().st_size for p in self.files())

    def param_counts(self) -> tuple[int, int]:
        """(parameters, nonzero) of the float model it was converted from (OpenVINO does not expose its own)."""
        return count_params(self.inspect_module)


def convert_ir(onnx_path: Path, dest: Path) -> str:
    """OpenVINO IR of an ONNX file (ov.convert_model, dynamic dimensions kept), saved uncompressed to `dest`."""
    ov = require_openvino()
    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(dest), compress_to_fp16=False)  # float32 weights: the float candidate as measured
    return "OpenVINO IR (ov.convert_model of the ONNX export, float32 weights)"


def quantize_ir(source: Path, dest: Path, calibration: list[Inputs], transformer: bool, bias_correction: bool = False) -> str:
    """NNCF post-training int8 of an IR, calibrated on `calibration` (one dataset item per batch); returns how."""
    ov, nncf = require_openvino(), require_nncf()
    model = ov.Core().read_model(str(source))
    input_names = [port.get_any_name() for port in model.inputs]
    dataset = nncf.Dataset(calibration, lambda batch: feeds(input_names, batch))
    options: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
    with quiet():
        quantized = nncf.quantize(
            model, dataset, subset_size=len(calibration),
            advanced_parameters=nncf.AdvancedQuantizationParameters(
                overflow_fix=nncf.OverflowFix.ENABLE, disable_bias_correction=not bias_correction,
            ),
            **options,
        )  # fmt: skip
        ov.save_model(quantized, str(dest), compress_to_fp16=False)
    return (
        f"int8 by NNCF {nncf.__version__} quantize ({'model_type=TRANSFORMER, ' if transformer else ''}"
        f"7-bit weights on every layer, activations calibrated on {len(calibration)} batches"
        f"{', bias correction' if bias_correction else ', no bias correction'})"
    )


def openvino_program(model: nn.Module, config: OpenVinoConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Export the float model to ONNX, convert it to OpenVINO IR, quantize it with NNCF when asked, compile it for the CPU."""
    ov = require_openvino()
    if ctx.device.type != "cpu":
        raise RuntimeFailed(f"runtime 'openvino': Hedgerow runs OpenVINO's CPU plugin only; this trial runs on {ctx.device}")
    model = model.cpu().eval()
    folder = Path(tempfile.mkdtemp(prefix="hedgerow-ov-"))
    example = ctx.task.example_batch(max(2, min(ctx.serving_batch_size, 8)))
    transformer = bool(ctx.task.sequence_inputs)
    try:
        try:
            how = export_onnx(model, example, folder / ONNX_FILE, ctx.task.sequence_inputs)
            how += "; " + convert_ir(folder / ONNX_FILE, folder / IR_FILE)
        except Exception as exc:
            raise RuntimeFailed(f"runtime 'openvino': exporting or converting the model failed ({first_line(exc)})") from exc
        path = folder / IR_FILE
        if config.int8:
            calibration = ctx.task.calibration_batches(config.calibration_batches, config.calibration_batch_size)
            try:
                how += "; " + quantize_ir(path, folder / IR_INT8_FILE, calibration, transformer, config.bias_correction)
            except MissingExtra:
                raise
            except Exception as exc:
                raise RuntimeFailed(f"runtime 'openvino': NNCF quantize failed ({first_line(exc)})") from exc
            path = folder / IR_INT8_FILE
        threads = torch.get_num_threads()
        try:
            started = time.perf_counter()
            module = OpenVinoModule(path, threads=threads, inspect_module=model)
            module(ctx.task.example_batch(ctx.serving_batch_size))
            startup = time.perf_counter() - started
        except Exception as exc:
            raise RuntimeFailed(f"runtime 'openvino': OpenVINO could not run the converted model ({first_line(exc)})") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for stale in (p for p in folder.iterdir() if p not in module.files()):
        stale.unlink()  # the ONNX file, and the float IR of an int8 program
    weakref.finalize(module, shutil.rmtree, folder, True)  # the IR lives as long as the compiled program
    details = {
        "openvino": ov.__version__,
        "int8": "nncf" if config.int8 else "none",
        "how": how,
        "threads": threads,
        "inference_precision": PRECISION,
        "kernel_archs": list(OPENVINO_ARCHS[config.int8]),
        "artifact_size_bytes": module.weights_nbytes(),
        "startup_seconds": round(startup, 3),
        "startup_method": f"read_model + compile_model for CPU + first batch of {ctx.serving_batch_size}",
        "accelerated": True,
    }
    technique = "openvino_int8_nncf" if config.int8 else "openvino"
    return module, StepRecord.of(config, technique, details=details)


class OpenVinoRuntime(Runtime):
    """OpenVINO's CPU plugin on the model converted to IR; int8 by NNCF's post-training quantization."""

    name = "openvino"
    label = "OpenVINO"
    cpu_only = "OpenVINO's CPU plugin"
    program_formats = ("openvino_int8", "openvino")
    build_cost = 2  # the ONNX export, a conversion to IR, and for int8 NNCF's calibration
    handlers = {OpenVinoConfig: openvino_program}

    def check_available(self) -> None:
        """MissingExtra (exit 2) naming the extra where openvino or nncf is not installed."""
        require_openvino()
        require_nncf()

    def stages(self, bits: int) -> list[TechniqueConfig]:
        """One stage: export, convert, quantize (int8 for bits 8) and compile."""
        return [OpenVinoConfig(int8=bits == 8)]

    def quantizes_int8(self) -> bool:
        """NNCF quantizes the IR itself: int8 is part of its stage."""
        return True

    def save(self, served: nn.Module, steps: list[StepRecord], task: Task, inputs: Inputs, out_dir: Path, *,
             batch_size: int) -> SavedProgram:  # fmt: skip
        """Copy the IR the trial served into the export, compile it again and judge it on val."""
        ov = require_openvino()
        step = runtime_step(self.name, served, OpenVinoModule, steps)
        reference = served_outputs(served, inputs, batch_size)
        int8 = step.details.get("int8", "none") != "none"
        name = IR_INT8_FILE if int8 else IR_FILE
        shutil.copyfile(served.path, out_dir / name)
        shutil.copyfile(served.weights_path, (out_dir / name).with_suffix(".bin"))
        module = OpenVinoModule(out_dir / name, threads=served.threads)
        diff, quality = judge_saved(module, reference, task, inputs, batch_size)
        settings = {
            "device": "CPU", "int8": step.details.get("int8", "none"), "inference_num_threads": served.threads,
            "performance_hint": "LATENCY", "inference_precision": PRECISION, "cpu_pinning": False, "how": step.details.get("how"),
            "kernel_archs": step.details.get("kernel_archs"),
        }  # fmt: skip
        reason = f"the OpenVINO program the trial served: {step.details.get('how', 'IR')}; loaded back, within {diff:.2g} of it on the val split"
        return SavedProgram(format="openvino_int8" if int8 else "openvino", file=name, reason=reason, library="openvino",
                            version=ov.__version__, max_abs_diff=diff, quality=quality, settings=settings)  # fmt: skip

    def load(self, export: ExportView, device: torch.device) -> nn.Module:
        """model.int8.xml (int8 candidates) or model.xml with its .bin, after refusing a .bin the manifest does not list;
        compiled with the trial's settings on as many threads as torch has here."""
        _, name = export.program_file(self.program_formats)
        export.check_listed(str(Path(name).with_suffix(".bin").as_posix()))
        return OpenVinoModule(export.root / name, threads=torch.get_num_threads())  # the server's thread setting (Serve's `threads`)
