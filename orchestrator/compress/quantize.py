"""Quantization: bf16/fp16, int8 with real int8 kernels (dynamic W8A8 or weight-only), int4 weight-only.

The `quantize` technique's knobs: bits (32: none), for int4 its group size, for int8 whether activations
are quantized too (dynamic) or stay float (weight-only: what Llama-family models with activation outliers
need), and the output head's width. A runtime that quantizes its own program (ONNX Runtime, OpenVINO,
torch.compile's PT2E) takes int8 over: the recipe then adds no torch int8 stage before the runtime's.
int4 on CPU runs torch's packed int4 kernel on Linear-only models (weight_only.py); a model with
convolutions, or a group size that kernel does not take, is fake-quantized (quality only).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal, Mapping

import torch
from pydantic import Field
from torch import nn

from orchestrator.compress.prune import PRUNABLE, prunable_weights
from orchestrator.compress.weight_only import (
    INT4_GROUP_SIZES,
    is_head,
    quantize_linear,
    set_module,
    weight_only_quantize,
)
from orchestrator.runtimes import REGISTRY
from orchestrator.techniques import (
    Context,
    Int8Settings,
    Knob,
    Knobs,
    Stage,
    StepRecord,
    Technique,
    TechniqueConfig,
    int8_mode,
    int8_torchao,
)
from orchestrator.techniques.details import x86_only
from orchestrator.techniques.domains import candidate_values

Bits = Literal[32, 16, 8, 4]
HeadBits = Literal[32, 8, 4]
Int8Activations = Literal["dynamic", "float"]
BIT_TEXT = {32: "fp32", 16: "bf16", 8: "int8"}


class HalfPrecisionConfig(TechniqueConfig):
    """16-bit floats: bf16 on CPU, fp16 on CUDA (or as chosen)."""

    stage = Stage.QUANTIZE
    keeps_float_weights = False
    dtype: Literal["auto", "bf16", "fp16"] = "auto"


class Int8Config(Int8Settings):
    """int8 with real int8 kernels: static PTQ (convs too) on CPU, dynamic for Linear-only models, torchao on CUDA."""


class Int8HeadConfig(Int8Config):
    """Dynamic int8 (W8A8) on every Linear but the output head, which stays float (32) or is weight-only int4."""

    lm_head_bits: Literal[32, 4]
    group_size: int = Field(32, ge=8)  # of an int4 head


class Int8WeightOnlyConfig(TechniqueConfig):
    """int8 weights per output channel, activations float: torch's packed int8 kernel on CPU, torchao on CUDA."""

    stage = Stage.QUANTIZE
    keeps_float_weights = False
    lm_head_bits: HeadBits | None = None  # None: int8 like the rest
    group_size: int = Field(32, ge=8)  # of an int4 head


class Int4WeightOnlyConfig(TechniqueConfig):
    """4-bit weights in groups: torchao int4 on CUDA; torch's packed int4 kernel on CPU (fake-quantized where it can't run)."""

    stage = Stage.QUANTIZE
    keeps_float_weights = False
    group_size: int = Field(32, ge=8)
    lm_head_bits: HeadBits | None = None  # None: int4 like the rest


class CastInput(nn.Module):
    """Run a lower-precision model behind a float32 interface: cast inputs in, outputs back out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor | None = None, **named: torch.Tensor) -> torch.Tensor:
        if x is not None:
            return self.model(self._cast(x)).float()
        return self.model(**{name: self._cast(t) for name, t in named.items()}).float()

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.dtype) if t.is_floating_point() else t  # token ids and masks stay integers


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Symmetric round-to-nearest quantize-dequantize, per output channel or per group of inputs.

    The gradient passes straight through, so this also serves quantization-aware training.
    """
    qmax = 2 ** (bits - 1) - 1
    flat = weight.reshape(weight.shape[0], -1)
    cols = flat.shape[1]
    group = group_size or cols
    pad = (-cols) % group
    padded = torch.nn.functional.pad(flat, (0, pad)).reshape(flat.shape[0], -1, group)
    scale = padded.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / qmax
    quantized = (padded / scale).round().clamp(-qmax - 1, qmax) * scale
    result = padded + (quantized - padded).detach()
    return result.reshape(flat.shape[0], -1)[:, :cols].reshape(weight.shape)


def packed_int4_bytes(numel: int, rows: int, cols: int, group_size: int, scale_bytes: int = 2) -> int:
    """Bytes of a weight stored as packed 4-bit values plus one fp16 scale per group."""
    groups_per_row = math.ceil(cols / group_size)
    return math.ceil(numel / 2) + rows * groups_per_row * scale_bytes


def half_precision(model: nn.Module, config: HalfPrecisionConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Cast weights to bf16 (CPU default) or fp16 (CUDA default) behind a float32 interface."""
    name = config.dtype if config.dtype != "auto" else ("fp16" if ctx.device.type == "cuda" else "bf16")
    dtype = torch.float16 if name == "fp16" else torch.bfloat16
    wrapped = CastInput(model.to(ctx.device, dtype=dtype).eval(), dtype)
    details = {"dtype": name, "capability": _cpu_capability() if ctx.device.type == "cpu" else None}
    return wrapped, StepRecord.of(config, name, details=details)


def int8(model: nn.Module, config: Int8Config, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """int8 by device: torch.ao FX static/dynamic on CPU, torchao dynamic-activation int8 on CUDA."""
    model = model.eval()
    if ctx.device.type == "cuda":
        return int8_torchao(model.to(ctx.device), config)
    model = model.cpu()
    fallbacks: list[str] = []
    mode = int8_mode(config.mode, model, ctx.task.sequence_inputs)
    if mode == "static":
        try:
            quantized = _int8_static_fx(model, config, ctx)
        except Exception as exc:  # FX can't trace every model; dynamic still gives real int8 Linear kernels
            fallbacks.append(f"static FX quantization failed ({type(exc).__name__}: {exc}); used dynamic int8 on Linear layers")
            mode, quantized = "dynamic", None
    if mode == "dynamic":
        quantized = dynamic_int8(model)
    return quantized, _int8_record(config, quantized, mode, fallbacks)


def _int8_record(config: Int8Config, quantized: nn.Module, mode: str, fallbacks: list[str],
                 kept_float: frozenset[str] = frozenset()) -> StepRecord:  # fmt: skip
    q_layers, float_layers = quantized_and_float_layers(quantized)
    backend = "x86" if mode == "static" else torch.backends.quantized.engine
    details = {
        "backend": backend,
        "mode": mode,
        "quantized_layers": q_layers,
        "float_layers": float_layers,
        "accelerated": True,
        "kernel_archs": x86_only(backend),
    }
    if mode == "dynamic":
        details["weight_granularity"] = "per_channel"
        embeddings = [name for name, m in quantized.named_modules() if isinstance(m, nn.Embedding)]
        if embeddings:
            details["embeddings"] = (
                f"{len(embeddings)} embedding tables stay float32 and are counted at float32 "
                "(dynamic int8 quantizes Linear layers only)"
            )
    for name in float_layers:
        if name not in kept_float:
            fallbacks.append(f"{name}: stays float (the {mode} int8 backend does not quantize it)")
    return StepRecord.of(config, f"int8_{mode}", details=details, fallbacks=fallbacks)


def int8_head(model: nn.Module, config: Int8HeadConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Dynamic int8 on every Linear but the output head, kept float32 or made weight-only int4 (CPU; CUDA: float)."""
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and is_head(n)]
    if ctx.device.type == "cuda" or not heads:
        plain = Int8Config(**config.model_dump(exclude={"lm_head_bits", "group_size"}))
        quantized, record = int8(model, plain, ctx)
        if heads:
            record.fallbacks.append(f"lm_head_bits={config.lm_head_bits}: the head is int8 like the rest on CUDA "
                                    "(a head of its own width is built on CPU only)")  # fmt: skip
        return quantized, record
    quantized, kept_float = dynamic_int8_with_head(model.eval().cpu(), config.lm_head_bits, config.group_size)
    # An int4 head is no Linear: the record lists it with neither kind, so it is added as quantized here.
    record = _int8_record(config, quantized, "dynamic", [], kept_float=frozenset(heads))
    details, fallbacks = record.details, record.fallbacks
    fallbacks += [f"{name}: stays float32 ({why})" for name, why in kept_float.items() if why]
    details["quantized_layers"] += [name for name in heads if name not in kept_float]
    details["lm_head_bits"] = config.lm_head_bits
    # Not "int8_dynamic": export rebuilds that by quantizing every Linear, which this head is not.
    record.technique = f"int8_dynamic_head_{'fp32' if config.lm_head_bits == 32 else 'int4'}"
    return quantized, record


def dynamic_int8_with_head(model: nn.Module, lm_head_bits: int, group_size: int) -> tuple[nn.Module, dict[str, str]]:
    """Dynamic int8 on every Linear but the output head, which stays float32 (lm_head_bits 32) or becomes weight-only
    int4 (4); the stage and an export's load both build it here. Returns the model and the heads left float32, each
    with the reason (empty for a head kept float on purpose)."""
    heads = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and is_head(n)]
    quantized = dynamic_int8(model, skip=set(heads))
    kept_float = {name: "" for name in heads}
    if lm_head_bits == 4:
        for name in heads:
            packed, why = quantize_linear(quantized.get_submodule(name), 4, group_size)
            if why:
                kept_float[name] = why
                continue
            set_module(quantized, name, packed)
            del kept_float[name]
    return quantized, kept_float


def dynamic_int8(model: nn.Module, skip: set[str] | None = None) -> nn.Module:
    """Linear layers (but those named in `skip`) to int8 with per-output-channel weight scales and activations
    quantized per batch.

    Per-channel, because one scale per weight matrix loses too much on transformers (measured on MiniLM).
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig

    spec: dict[Any, Any] = {nn.Linear: per_channel_dynamic_qconfig}
    spec.update({name: None for name in skip or ()})  # a module name overrides its type's qconfig
    with warnings.catch_warnings():  # torch.ao's deprecation notice; the kernels are current
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)


def _int8_static_fx(model: nn.Module, config: Int8Config, ctx: Context) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    calibration = ctx.task.calibration_batches(config.calibration_batches, config.calibration_batch_size)
    if not isinstance(calibration[0], torch.Tensor):
        raise ValueError("static FX int8 traces one positional input; this model takes named inputs")
    with warnings.catch_warnings():
        # torch.ao warns that FX quantization is deprecated in favour of torchao PT2E; it still runs here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (calibration[0],))
        with torch.inference_mode():
            for batch in calibration:
                prepared(batch)
        return convert_fx(prepared)


def int8_weight_only(model: nn.Module, config: Int8WeightOnlyConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Weight-only int8 (activations float): torch's packed int8 kernel on CPU, torchao's on CUDA."""
    model = model.eval()
    if ctx.device.type == "cuda":
        return _int8_weight_only_torchao(model.to(ctx.device), config)
    quantized, details = weight_only_quantize(model.cpu(), 8, config.group_size, config.lm_head_bits)
    return quantized, _weight_only_record(config, "int8_weight_only", details)


def int4_weight_only(model: nn.Module, config: Int4WeightOnlyConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """int4 weights in groups, activations float: torchao on CUDA; on CPU torch's packed int4 kernel on Linear-only
    models, group-wise fake quantization (quality only) where that kernel can't run."""
    model = model.eval()
    if ctx.device.type == "cuda":
        return _int4_torchao(model.to(ctx.device), config)
    model = model.cpu()
    why_fake = _why_no_int4_kernel(model, config.group_size)
    if why_fake is None:
        quantized, details = weight_only_quantize(model, 4, config.group_size, config.lm_head_bits)
        return quantized, _weight_only_record(config, "int4_weight_only", details)
    sizes = _fake_quantize_all(model, 4, config.group_size)
    details = {
        "backend": "fake_quant",
        "accelerated": False,
        "quantized_layers": list(sizes),
        "float_layers": [],
        "packed_size_bytes": packed_model_bytes(model, sizes),
    }
    record = StepRecord.of(
        config,
        "int4_fake",
        details=details,
        fallbacks=[
            (
                f"int4 is not accelerated on this device ({ctx.device.type}) for this model: {why_fake}; weights are "
                "fake-quantized for quality; size counts packed 4-bit weights"
            )
        ],
    )
    return model, record


def _why_no_int4_kernel(model: nn.Module, group_size: int) -> str | None:
    """Why the CPU int4 kernel cannot serve this model (None: it can, layer shapes aside)."""
    if group_size not in INT4_GROUP_SIZES:
        return f"the CPU int4 kernel takes groups of {', '.join(map(str, INT4_GROUP_SIZES))}, not {group_size}"
    convs = [n for n, m in prunable_weights(model) if not isinstance(m, nn.Linear)]
    if convs:
        return f"it has {len(convs)} convolution layers, which the CPU int4 kernel (Linear only) cannot run"
    return None


def _weight_only_record(config: TechniqueConfig, technique: str, details: dict[str, Any]) -> StepRecord:
    details = dict(details)
    fallbacks, notes = details.pop("fallbacks"), details.pop("notes")
    if notes:
        details["notes"] = notes
    return StepRecord.of(config, technique, details=details, fallbacks=fallbacks)


def _int8_weight_only_torchao(model: nn.Module, config: Int8WeightOnlyConfig) -> tuple[nn.Module, StepRecord]:
    from torchao.quantization import Int8WeightOnlyConfig as AoInt8
    from torchao.quantization import quantize_

    names = {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and not (is_head(n) and config.lm_head_bits == 32)}
    quantize_(model, AoInt8(), filter_fn=lambda m, fqn: fqn in names)
    float_layers = [n for n, m in prunable_weights(model) if n not in names]
    details = {"backend": "torchao", "mode": "weight_only", "accelerated": True, "quantized_layers": sorted(names),
               "float_layers": float_layers}  # fmt: skip
    fallbacks = [f"{n}: stays float (torchao int8 weight-only quantizes Linear layers only)" for n in float_layers if not is_head(n)]
    if config.lm_head_bits == 4:
        fallbacks.append("lm_head_bits=4: the head is int8 on CUDA (int4 heads are built on CPU only)")
    return model, StepRecord.of(config, "int8_weight_only_torchao", details=details, fallbacks=fallbacks)


def _fake_quantize_all(model: nn.Module, bits: int, group_size: int) -> dict[str, int]:
    sizes = {}
    with torch.no_grad():
        for name, module in prunable_weights(model):
            weight = module.weight
            module.weight.copy_(fake_quantize(weight, bits, group_size))
            rows, cols = weight.shape[0], weight[0].numel()
            sizes[name] = packed_int4_bytes(weight.numel(), rows, cols, group_size)
    return sizes


def packed_model_bytes(model: nn.Module, packed_weight_bytes: dict[str, int]) -> int:
    """Deployed size with the named layers' weights packed; every other tensor at its dtype's size."""
    packed_ids = {id(m.weight) for n, m in prunable_weights(model) if n in packed_weight_bytes}
    dense = sum(
        t.numel() * t.element_size()
        for t in list(model.parameters()) + list(model.buffers())
        if id(t) not in packed_ids
    )
    return dense + sum(packed_weight_bytes.values())


def _int4_torchao(model: nn.Module, config: Int4WeightOnlyConfig) -> tuple[nn.Module, StepRecord]:
    from torchao.quantization import Int4WeightOnlyConfig as AoInt4, quantize_

    model = model.to(torch.bfloat16)
    eligible = {
        n for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.in_features % config.group_size == 0 and m.out_features % 8 == 0
        and not (is_head(n) and config.lm_head_bits == 32)
    }  # fmt: skip
    try:
        # tinygemm kernels ship with torch; torchao's default "plain" format needs the separate mslk package.
        ao_config = AoInt4(group_size=config.group_size, int4_packing_format="tile_packed_to_4d")
    except TypeError:  # torchao before int4_packing_format existed: tinygemm was the default
        ao_config = AoInt4(group_size=config.group_size)
    quantize_(model, ao_config, filter_fn=lambda m, fqn: fqn in eligible)
    float_layers = [n for n, m in prunable_weights(model) if n not in eligible]
    details = {"backend": "torchao", "accelerated": True, "quantized_layers": sorted(eligible), "float_layers": float_layers}
    fallbacks = [f"{n}: stays bf16 (torchao int4 needs a Linear with in_features % {config.group_size} == 0)"
                 for n in float_layers if not (is_head(n) and config.lm_head_bits == 32)]  # fmt: skip
    if config.lm_head_bits == 8:
        fallbacks.append("lm_head_bits=8: the head is int4 on CUDA (int8 heads are built on CPU only)")
    wrapped = CastInput(model, torch.bfloat16)
    return wrapped, StepRecord.of(config, "int4_torchao", details=details, fallbacks=fallbacks)


def quantized_and_float_layers(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of layers running int8 kernels, and of conv/linear layers still in float."""
    quantized, floating = [], []
    for name, module in model.named_modules():
        kind = type(module).__module__
        if kind.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")) and hasattr(module, "weight"):
            quantized.append(name)
        elif isinstance(module, PRUNABLE) and not kind.startswith("torch.ao"):
            floating.append(name)
    return quantized, floating


def _cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def _stages(recipe: Any) -> list[TechniqueConfig]:
    head = _head_bits(recipe)
    if recipe.bits == 16:
        return [HalfPrecisionConfig()]
    if recipe.bits == 8 and not REGISTRY.get(recipe.runtime).quantizes_int8():
        if recipe.int8_activations == "float":
            return [Int8WeightOnlyConfig(lm_head_bits=head, group_size=recipe.int4_group_size)]
        if head in (32, 4):
            return [Int8HeadConfig(lm_head_bits=head, group_size=recipe.int4_group_size)]
        return [Int8Config()]
    if recipe.bits == 4:
        return [Int4WeightOnlyConfig(group_size=recipe.int4_group_size, lm_head_bits=head)]
    return []


def _head_bits(recipe: Any) -> int | None:
    """The head's width where it differs from the other layers' (None: the same)."""
    head = getattr(recipe, "lm_head_bits", None)
    return None if head is None or head == recipe.bits else int(head)


def _check(recipe: Any) -> list[str]:
    """A runtime that quantizes int8 itself serves its own W8A8 program: weight-only int8 and a head width of its own
    need torch's kernels (the eager runtime), unless the runtime says it builds them (`weight_only_int8`)."""
    if recipe.bits != 8:
        return []
    runtime = REGISTRY.get(recipe.runtime)
    if not runtime.quantizes_int8() or getattr(runtime, "weight_only_int8", False):
        return []
    asked = [f"int8_activations={recipe.int8_activations!r}"] if recipe.int8_activations == "float" else []
    asked += [f"lm_head_bits={recipe.lm_head_bits}"] if _head_bits(recipe) is not None else []
    if not asked:
        return []
    message = (
        f"{asked[0]}: runtime {recipe.runtime!r} quantizes int8 itself (activations too, every Linear alike), so it "
        f"cannot serve {' and '.join(asked)}; use runtime 'eager' for weight-only int8 or a head of another width"
    )
    return [message]


def _describe(knobs: Knobs, shown: frozenset[str]) -> list[str]:
    """'fp32', 'bf16', 'int8', 'int8 weight-only', 'int4 g32', then the head where its width differs: 'head fp32',
    'head int8', 'head int4 g32'."""
    if "bits" not in knobs:
        return []
    bits = int(knobs["bits"])
    group = f" g{knobs['int4_group_size']}" if bits == 4 and "int4_group_size" in knobs else ""
    weight_only = " weight-only" if bits == 8 and knobs.get("int8_activations") == "float" else ""
    parts = [BIT_TEXT.get(bits, f"int{bits}") + weight_only + group]
    head = knobs.get("lm_head_bits")
    if bits in (8, 4) and head is not None and int(head) != bits:
        head_group = f" g{knobs['int4_group_size']}" if int(head) == 4 and "int4_group_size" in knobs else ""
        parts.append(f"head {BIT_TEXT.get(int(head), f'int{int(head)}')}{head_group}")
    return parts


def _int4_anywhere(knobs: Knobs) -> bool:
    """Whether any layer is int4: every Linear (bits 4) or the head alone (lm_head_bits 4)."""
    head = knobs.get("lm_head_bits")
    return int(knobs["bits"]) == 4 or (int(knobs["bits"]) == 8 and head is not None and int(head) == 4)


def _seeds(space: Mapping[str, Any], teacher_layers: int | None) -> list[dict[str, Any]]:
    """Each quantized bit width of the space alone (8, 16, 4 bits), on each runtime of the space that serves it,
    the cheapest to build first."""
    seeds = []
    for bits in sorted((b for b in candidate_values(space.get("bits")) if b != 32), reverse=True):
        serving = REGISTRY.serving(bits)
        named = [r for r in candidate_values(space.get("runtime")) or [serving[0]] if r in serving] or serving[:1]
        seeds += [{"bits": bits, "runtime": r} for r in sorted(named, key=lambda r: REGISTRY.get(r).build_cost)]
    return seeds


TECHNIQUE = Technique(
    name="quantize",
    knobs=(
        Knob("bits", Bits, 32, "32 (float), 16 (bf16 on CPU, fp16 on CUDA), 8 (int8), 4 (int4 weights)",
             in_key_when_default=True),
        Knob("int4_group_size", int, 32, "int4: weights per quantization group", {"ge": 8},
             applies=_int4_anywhere, in_key_when_default=True),
        Knob("int8_activations", Int8Activations, "dynamic",
             "int8: activations quantized per batch too (dynamic, W8A8) or kept float (weight-only)",
             applies=lambda k: int(k["bits"]) == 8),
        Knob("lm_head_bits", HeadBits | None, None,
             "int8/int4: the output head's width (None: as bits; 32: float; 8 or 4: weight-only)",
             applies=lambda k: int(k["bits"]) in (8, 4)),
    ),  # fmt: skip
    sampled_as=("bits", "int8_activations", "lm_head_bits", "int4_group_size"),
    stages=_stages,
    describe=_describe,
    seeds=_seeds,
    check=_check,
    handlers={HalfPrecisionConfig: half_precision, Int8Config: int8, Int8HeadConfig: int8_head,
              Int8WeightOnlyConfig: int8_weight_only, Int4WeightOnlyConfig: int4_weight_only},
    stage_order=40,
    sample_order=30,
    seed_order=10,
)
