"""Weight-only int8 / int4 Linear layers on CPU with torch's own packed kernels; activations stay float.

Llama-family activations have outliers that dynamic int8 (W8A8) rounds away (SmolLM2-135M perplexity 18.9 → 68
even per channel), so an LLM quantizes its weights only: int8 per output channel (`_weight_int8pack_mm`) or int4
in groups along the input dimension (`_weight_int4pack_mm_for_cpu`, asymmetric: a float scale and zero per group).
Each layer takes and returns float32 and runs its kernel on bfloat16 activations: both kernels' vectorized
paths are bf16 (their float32 paths are reference loops, slower than a float32 Linear).
`weight_only_quantize` is deterministic (round to nearest, no calibration), so export re-applies it to the float
weights it saved and gets the same model back.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from orchestrator.errors import InputError

INT4_GROUP_SIZES = (32, 64, 128, 256)  # what _weight_int4pack_mm_for_cpu takes
INT4_ROWS_MULTIPLE = 16  # _convert_weight_to_int4pack_for_cpu packs output rows in blocks of 16
HEAD_NAME = "lm_head"


class Int8WeightOnlyLinear(nn.Module):
    """A Linear with int8 weights, one scale per output channel; float32 in and out, the kernel run in `compute_dtype`."""

    def __init__(self, weight_int8: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None,
                 compute_dtype: torch.dtype = torch.bfloat16) -> None:  # fmt: skip
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.compute_dtype = compute_dtype
        self.register_buffer("weight_int8", weight_int8.contiguous())
        self.register_buffer("scales", scales.to(compute_dtype).contiguous())  # the kernel takes them in its dtype
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, compute_dtype: torch.dtype = torch.bfloat16) -> Int8WeightOnlyLinear:
        """Symmetric round-to-nearest per output channel: scale = max |w| / 127 (as the kernel will hold it)."""
        weight = linear.weight.detach().to(torch.float32)
        scales = (weight.abs().amax(dim=1).clamp_min(1e-12) / 127).to(compute_dtype).to(torch.float32)
        quantized = (weight / scales[:, None]).round().clamp(-127, 127).to(torch.int8)
        return cls(quantized, scales, linear.bias, compute_dtype)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernel multiplies by."""
        return self.weight_int8.to(torch.float32) * self.scales.to(torch.float32)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales).to(torch.float32)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits=8, "
                f"compute={str(self.compute_dtype).removeprefix('torch.')}, bias={self.bias is not None}")  # fmt: skip


class Int4WeightOnlyLinear(nn.Module):
    """A Linear with 4-bit weights packed for the CPU kernel, a scale and zero per group of inputs; float32 in and out,
    the kernel run in `compute_dtype`."""

    def __init__(self, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group_size: int, in_features: int,
                 bias: torch.Tensor | None, compute_dtype: torch.dtype = torch.bfloat16) -> None:  # fmt: skip
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, packed.shape[0], group_size
        self.compute_dtype = compute_dtype
        self.register_buffer("weight_int4pack", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(compute_dtype).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int, compute_dtype: torch.dtype = torch.bfloat16) -> Int4WeightOnlyLinear:
        """Asymmetric round-to-nearest per group: levels 0..15 span the group's [min, max] (the kernel's float zero)."""
        why = int4_unsupported(linear, group_size)
        if why:
            raise ValueError(why)
        codes, scales, zeros = int4_codes(linear.weight.detach(), group_size, compute_dtype)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)  # inner k tiles: unused on CPU
        scales_and_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1)  # [groups, out, 2], as the kernel reads it
        return cls(packed, scales_and_zeros, group_size, linear.in_features, linear.bias, compute_dtype)

    def dequantized_weight(self) -> torch.Tensor:
        """The float32 weight the kernel multiplies by (the kernel's float32 path applied to the identity)."""
        eye = torch.eye(self.in_features, dtype=torch.float32)
        scales = self.scales_and_zeros.to(torch.float32)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.weight_int4pack, self.group_size, scales).t().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(self.compute_dtype).contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight_int4pack, self.group_size, self.scales_and_zeros)
        y = y.to(torch.float32)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits=4, group_size={self.group_size}, "
                f"compute={str(self.compute_dtype).removeprefix('torch.')}, bias={self.bias is not None}")  # fmt: skip


def int4_codes(weight: torch.Tensor, group_size: int,
               scale_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(codes 0..15 as int32 [out, in], scales [out, groups], zeros [out, groups]): w ≈ (code - 8) · scale + zero.

    Levels 0..15 span each group's [min, max]; the codes are rounded against the scale and zero as `scale_dtype`
    holds them, so the kernel's grid is the one rounded to.
    """
    rows, cols = weight.shape
    grouped = weight.to(torch.float32).reshape(rows, cols // group_size, group_size)
    low, high = grouped.amin(dim=-1), grouped.amax(dim=-1)
    scales = ((high - low) / 15).clamp_min(1e-12).to(scale_dtype).to(torch.float32)
    zeros = (low + 8 * scales).to(scale_dtype).to(torch.float32)  # the kernel subtracts 8 from each code, scales, adds the zero
    codes = ((grouped - (zeros - 8 * scales)[..., None]) / scales[..., None]).round().clamp(0, 15)
    return codes.reshape(rows, cols).to(torch.int32), scales, zeros


def int4_unsupported(linear: nn.Linear, group_size: int) -> str | None:
    """Why the CPU int4 kernel cannot take this Linear at this group size (None: it can)."""
    if group_size not in INT4_GROUP_SIZES:
        return f"the CPU int4 kernel takes groups of {', '.join(map(str, INT4_GROUP_SIZES))}, got {group_size}"
    if linear.in_features % group_size:
        return f"in_features {linear.in_features} is not a multiple of the group size {group_size}"
    if linear.out_features % INT4_ROWS_MULTIPLE:
        return f"out_features {linear.out_features} is not a multiple of {INT4_ROWS_MULTIPLE}"
    return None


def is_head(name: str) -> bool:
    """Whether a module name is a language model's output head."""
    return name == HEAD_NAME or name.endswith("." + HEAD_NAME)


def weight_only_quantize(model: nn.Module, bits: int, group_size: int = 32, lm_head_bits: int | None = None,
                         compute_dtype: torch.dtype = torch.bfloat16) -> tuple[nn.Module, dict[str, Any]]:  # fmt: skip
    """Replace the model's nn.Linear layers (in place) by weight-only int8 or int4 kernels; activations stay float32.

    `bits` 8: per output channel; 4: asymmetric groups of `group_size` inputs. `lm_head_bits` (None: as `bits`;
    32: float; 8 or 4) sets the output head's width; quantizing a head tied to the embedding unties it (the
    embedding table stays float for lookups). A Linear the kernel cannot take stays float, with the reason in
    `fallbacks`. Each layer takes and returns float32; its kernel runs in `compute_dtype`: bfloat16 by default,
    the kernels' vectorized path (float32 runs their reference loops, 2-25× slower than an fp32 Linear on
    SmolLM2). Returns the model and its details: backend, quantized_layers, float_layers, layer_bits,
    packed_size_bytes (the saved state, packed weights as stored), fallbacks, notes.
    """
    if bits not in (8, 4):
        raise InputError(f"bits: weight-only quantization takes 8 or 4, got {bits}")
    if lm_head_bits not in (None, 32, 8, 4):
        raise InputError(f"lm_head_bits: expected 32, 8, 4 or None (as bits), got {lm_head_bits}")
    if compute_dtype not in (torch.bfloat16, torch.float32):
        raise InputError(f"compute_dtype: expected torch.bfloat16 or torch.float32, got {compute_dtype}")
    model = model.eval().cpu()
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    quantized, floating, fallbacks, notes = [], [], [], []
    layer_bits: dict[str, int] = {}
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for name, linear in linears:
        width = (lm_head_bits or bits) if is_head(name) else bits
        if width == 32:
            floating.append(name)
            notes.append(f"{name}: kept float32 (lm_head_bits=32)")
            continue
        replacement, why = quantize_linear(linear, width, group_size, compute_dtype)
        if why:
            floating.append(name)
            fallbacks.append(f"{name}: stays float32 ({why})")
            continue
        if id(linear.weight) in embedding_ids:
            notes.append(f"{name}: tied to the input embedding; quantizing it unties them: the embedding table stays "
                         "float32 for lookups and both are counted in the size")  # fmt: skip
        set_module(model, name, replacement)
        quantized.append(name)
        layer_bits[name] = width
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            floating.append(name)
            fallbacks.append(f"{name}: stays float32 (weight-only kernels quantize Linear layers only)")
    backend = "aten_int8pack" if bits == 8 else "aten_int4pack_cpu"
    details = {
        "backend": backend,
        "activations": "float32",  # at each layer's boundary
        "compute_dtype": str(compute_dtype).removeprefix("torch."),
        "accelerated": True,
        "quantized_layers": quantized,
        "float_layers": floating,
        "layer_bits": layer_bits,
        "group_size": group_size if 4 in layer_bits.values() else None,
        "packed_size_bytes": stored_bytes(model),
        "fallbacks": fallbacks,
        "notes": notes,
    }
    return model, details


def quantize_linear(linear: nn.Linear, bits: int, group_size: int = 32,
                    compute_dtype: torch.dtype = torch.bfloat16) -> tuple[nn.Module, str | None]:  # fmt: skip
    """One Linear as a weight-only int8 / int4 module, or the Linear itself and why the kernel cannot take it."""
    why = int4_unsupported(linear, group_size) if bits == 4 else None
    if why:
        return linear, why
    with torch.no_grad():
        if bits == 8:
            return Int8WeightOnlyLinear.from_linear(linear, compute_dtype), None
        return Int4WeightOnlyLinear.from_linear(linear, group_size, compute_dtype), None


def stored_bytes(model: nn.Module) -> int:
    """Bytes of the model's state as saved: every distinct tensor of its state_dict once (packed weights at their packed
    size, tied ones once; non-persistent buffers such as rotary tables, rebuilt on load, not at all)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for tensor in model.state_dict().values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        total += tensor.numel() * tensor.element_size()
    return total


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put `module` in place of the submodule called `name`."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
