"""Weights as safetensors, FX int8 included, and the module they load into.

safetensors holds plain tensors only. A torch.ao FX int8 state_dict holds
quantized tensors, dtypes and tuples (a Linear's packed params), so each value
is stored as plain tensors (int8 values, per-channel scales and zero points)
with a JSON layout in the file's metadata that says how to reassemble it. The
module is rebuilt from the task's architecture: the pruning history replayed
with Torch-Pruning, then the same quantization wrapper (prepare_fx/convert_fx
without calibration, or CastInput for 16 bits), then the weights loaded.
Nothing is ever unpickled.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from orchestrator.compress import CastInput, StepRecord
from orchestrator.compress.prune import layer_widths
from orchestrator.compress.quantize import dynamic_int8
from orchestrator.deploy._errors import ExportError, VerificationError
from orchestrator.deploy.manifest import Architecture, InputSpec
from orchestrator.techniques import Stage
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs
from orchestrator.techniques.details import PruneDetails

LAYOUT_KEY = "hedgerow.layout"
FORMAT_KEY = "hedgerow.weights_format"
_DTYPES = {"qint8": torch.qint8, "quint8": torch.quint8, "qint32": torch.qint32}
_HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def weights_format(steps: list[StepRecord]) -> str:
    """The weights format of a candidate from its quantize stage; formats not exportable raise ExportError."""
    quantize = next((s for s in steps if s.stage is Stage.QUANTIZE), None)
    prune = next((s for s in steps if s.stage is Stage.PRUNE), None)
    if (
        prune is not None
        and prune.technique == "semi_structured_2_4"
        and quantize is not None
        and quantize.technique in _HALF
    ):
        raise ExportError(
            "2:4 sparse semi-structured weights (CUDA sparse kernels) cannot be exported yet; export a dense candidate"
        )
    if quantize is None or quantize.technique == "int4_fake":
        return "float"  # int4 on CPU is fake-quantized: float32 weights on the int4 grid
    if quantize.technique in _HALF:
        return quantize.technique
    if quantize.technique == "int8_static":
        return "int8_fx_static"
    if quantize.technique == "int8_dynamic":
        return "int8_dynamic"
    raise ExportError(
        f"candidates quantized with {quantize.technique!r} (torchao tensor subclasses on CUDA) cannot be exported "
        "as plain safetensors yet; export a CPU-quantized or float candidate"
    )


def architecture(task: Task, steps: list[StepRecord], inputs: Inputs, teacher_fingerprint: str) -> Architecture:
    """What the loader needs to rebuild the module: pruned widths and history, quantization, input shapes."""
    prune = next((s for s in steps if s.stage is Stage.PRUNE), None)
    quantize = next((s for s in steps if s.stage is Stage.QUANTIZE), None)
    pruned = PruneDetails.of(prune) if prune is not None else None
    history = pruned.pruning_history if pruned is not None and prune.technique == "structured" else None
    structures = [PruneDetails.of(s).structure for s in reversed(steps) if s.stage is Stage.PRUNE]
    return Architecture(
        prune_technique=prune.technique if prune else None,
        layer_widths=pruned.layer_widths if pruned else None,
        pruning_history=history or None,
        encoder_structure=next((s for s in structures if s is not None), None),
        quantize_technique=quantize.technique if quantize else None,
        weights_format=weights_format(steps),  # type: ignore[arg-type]
        teacher_fingerprint=teacher_fingerprint,
        **input_fields(inputs, task.sequence_inputs),
    )


def input_fields(inputs: Inputs, sequence_inputs: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest's input description: one shape and dtype, or a spec per named tensor (sequence lengths may vary)."""
    if isinstance(inputs, torch.Tensor):
        return {"input_shape": list(inputs.shape[1:]), "input_dtype": str(inputs.dtype).removeprefix("torch.")}
    specs = {
        k: InputSpec(
            shape=list(v.shape[1:]), dtype=str(v.dtype).removeprefix("torch."), variable_dims=[0] if k in sequence_inputs else []
        )
        for k, v in sorted(inputs.items())
    }
    return {"input_shape": [], "named_inputs": specs}


def example_inputs(arch: Architecture, n: int = 2) -> Inputs:
    """Zeros shaped as the exported model's inputs, `n` examples."""
    if arch.named_inputs:
        return {k: torch.zeros(n, *s.shape, dtype=getattr(torch, s.dtype)) for k, s in arch.named_inputs.items()}
    return torch.zeros(n, *arch.input_shape, dtype=getattr(torch, arch.input_dtype))


# ---- state_dict <-> plain tensors + layout ------------------------------------------------------------


def encode_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Plain tensors and a JSON-able layout from a state_dict that may hold quantized tensors and tuples."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def put(name: str, tensor: torch.Tensor) -> str:
        t = tensor.detach().cpu().contiguous()
        if t.data_ptr() in seen and t.numel():
            t = t.clone()  # safetensors refuses tensors that share memory
        seen.add(t.data_ptr())
        tensors[name] = t
        return name

    def encode(name: str, value: Any) -> dict[str, Any]:
        if isinstance(value, torch.Tensor) and value.is_quantized:
            spec: dict[str, Any] = {
                "kind": "quantized",
                "dtype": str(value.dtype).removeprefix("torch."),
                "values": put(name, value.int_repr()),
            }
            if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                spec.update(
                    qscheme="per_channel",
                    scales=put(f"{name}.__scales", value.q_per_channel_scales()),
                    zero_points=put(f"{name}.__zero_points", value.q_per_channel_zero_points()),
                    axis=int(value.q_per_channel_axis()),
                )
            else:
                spec.update(qscheme="per_tensor", scale=float(value.q_scale()), zero_point=int(value.q_zero_point()))
            return spec
        if isinstance(value, torch.Tensor):
            return {"kind": "tensor", "name": put(name, value)}
        if isinstance(value, torch.dtype):
            return {"kind": "dtype", "value": str(value).removeprefix("torch.")}
        if isinstance(value, (tuple, list)):
            return {"kind": "tuple", "items": [encode(f"{name}.__{i}", v) for i, v in enumerate(value)]}
        if value is None:
            return {"kind": "none"}
        if isinstance(value, (bool, int, float, str)):
            return {"kind": "scalar", "value": value}
        raise ExportError(
            f"state_dict entry {name!r} is a {type(value).__name__}, which cannot be stored as plain tensors"
        )

    layout = {name: encode(name, value) for name, value in state.items()}
    return tensors, layout


def decode_state(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> "OrderedDict[str, Any]":
    """The state_dict that `encode_state` took apart."""

    def decode(spec: dict[str, Any]) -> Any:
        kind = spec["kind"]
        if kind == "tensor":
            return tensors[spec["name"]]
        if kind == "quantized":
            values = tensors[spec["values"]]
            if spec["qscheme"] == "per_channel":
                q = torch._make_per_channel_quantized_tensor(
                    values, tensors[spec["scales"]], tensors[spec["zero_points"]], spec["axis"]
                )
            else:
                q = torch._make_per_tensor_quantized_tensor(values, spec["scale"], spec["zero_point"])
            if q.dtype != _DTYPES[spec["dtype"]]:
                raise VerificationError(
                    f"quantized tensor {spec['values']!r}: expected {spec['dtype']}, rebuilt {q.dtype}"
                )
            return q
        if kind == "dtype":
            return _DTYPES.get(spec["value"]) or getattr(torch, spec["value"])
        if kind == "tuple":
            return tuple(decode(item) for item in spec["items"])
        if kind == "none":
            return None
        if kind == "scalar":
            return spec["value"]
        raise VerificationError(f"unknown layout entry kind {kind!r}")

    return OrderedDict((name, decode(spec)) for name, spec in layout.items())


def save_weights(model: nn.Module, path: Path, fmt: str) -> None:
    """Write a model's state_dict as safetensors, with its layout and format in the metadata."""
    tensors, layout = encode_state(model.state_dict())
    save_file(tensors, str(path), metadata={"format": "pt", LAYOUT_KEY: json.dumps(layout), FORMAT_KEY: fmt})
    _canonical_header(path)
    path.chmod(0o644)  # safetensors writes owner-only; the serving user must be able to read it


def _canonical_header(path: Path) -> None:
    """Rewrite the safetensors header with sorted keys, so the same weights always give the same bytes.

    safetensors keeps the metadata in a hash map whose order changes from call to call; an export
    written twice would then differ, and publishing it again could not skip the identical object.
    Offsets in the header are relative to the data, so the header may change length (padded to 8).
    """
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])


def read_weights(path: Path) -> "OrderedDict[str, Any]":
    """The state_dict stored by `save_weights`."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
        tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    if LAYOUT_KEY not in metadata:
        return OrderedDict(tensors)  # plain safetensors written by another tool
    return decode_state(tensors, json.loads(metadata[LAYOUT_KEY]))


# ---- the module the weights load into ------------------------------------------------------------------


def base_architecture(task: Task) -> nn.Module:
    """The task's unpruned architecture: `build_model()` where the task has one (no training), else its teacher."""
    model = task.build_model()
    return (model if model is not None else copy.deepcopy(task.teacher())).cpu().eval()


def build_module(task: Task, arch: Architecture) -> nn.Module:
    """An empty module of the exported candidate's exact structure (weights to be loaded)."""
    # Torch-Pruning traces the graph through autograd: no inference mode, gradients on, even if the caller's are off.
    with torch.inference_mode(False), torch.enable_grad():
        return _build_module(task, arch)


def _build_module(task: Task, arch: Architecture) -> nn.Module:
    import torch_pruning as tp

    model = base_architecture(task)
    example = example_inputs(arch)
    if arch.pruning_history:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        graph.load_pruning_history(arch.pruning_history)
    if arch.encoder_structure:
        from orchestrator.compress.transformer_prune import apply_structure

        model = apply_structure(model, arch.encoder_structure)
    if (
        arch.layer_widths is not None
        and arch.prune_technique == "structured"
        and layer_widths(model) != arch.layer_widths
    ):
        raise VerificationError(
            f"the task's architecture, pruned by the recorded history, has widths {layer_widths(model)}, "
            f"not the exported {arch.layer_widths}: the task (or its arguments) differs from the one exported"
        )
    fmt = arch.weights_format
    if fmt in _HALF:
        return CastInput(model.to(_HALF[fmt]), _HALF[fmt]).eval()
    if fmt == "int8_fx_static":
        return _fx_int8_shell(model, example[:1])
    if fmt == "int8_dynamic":
        return dynamic_int8(model).eval()
    return model


def _fx_int8_shell(model: nn.Module, example: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        # No calibration: every scale and zero point is overwritten by the stored ones.
        warnings.simplefilter("ignore")
        return convert_fx(prepare_fx(model, get_default_qconfig_mapping("x86"), (example,))).eval()


def load_module(task: Task, arch: Architecture, weights_path: Path) -> nn.Module:
    """Rebuild the module and load the exported weights into it (strictly: every key, every shape)."""
    module = build_module(task, arch)
    fresh = module.state_dict()
    state = read_weights(weights_path)
    state._metadata = getattr(fresh, "_metadata", None)  # type: ignore[attr-defined]  # quantized Linear reads its version here
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VerificationError(f"{weights_path}: the weights do not fit the rebuilt architecture: {exc}") from exc
    return module.eval()
