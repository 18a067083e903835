"""A model's size as torch holds it: parameters counted (quantized and sparse layers included) and weight bytes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._pytree import tree_flatten


def count_params(model: nn.Module) -> tuple[int, int]:
    """(parameters, nonzero parameters) of conv/linear/norm weights and biases, quantized layers included."""
    total = nonzero = 0
    seen: set[object] = set()  # a weight shared by two modules (tied embeddings and LM head) is counted once
    alive: list[torch.Tensor] = []  # unpacked weights held until the end, so no later one reuses their memory
    for module in model.modules():
        for tensor in _own_weights(module):
            if _identity(tensor) in seen:
                continue
            seen.add(_identity(tensor))
            alive.append(tensor)
            tensor = _plain(tensor)
            total += tensor.numel()
            try:
                nonzero += int(torch.count_nonzero(tensor))
            except (NotImplementedError, RuntimeError):  # packed formats (torchao int4) can't count zeros
                nonzero += tensor.numel()
    return total, nonzero


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """A strided, unquantized view of a weight: sparse, torch.ao-quantized and torchao subclasses alike."""
    if type(tensor) not in (torch.Tensor, nn.Parameter):  # torchao / semi-structured tensor subclasses
        for method in ("dequantize", "to_dense"):
            try:
                return getattr(tensor, method)()
            except Exception:  # not every subclass implements both
                continue
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if tensor.is_quantized:
        tensor = tensor.int_repr()
    return tensor


def _own_weights(module: nn.Module) -> list[torch.Tensor]:
    weight = getattr(module, "weight", None)
    if callable(weight) and not isinstance(weight, torch.Tensor):  # torch.ao quantized layers
        tensors = [weight()]
        bias = module.bias() if callable(getattr(module, "bias", None)) else None
        return tensors + ([bias] if bias is not None else [])
    return [p.detach() for p in module.parameters(recurse=False)]


def weights_bytes(model: nn.Module) -> int:
    """In-memory bytes of every parameter and buffer (quantized packed weights included)."""
    total = 0
    seen: set[object] = set()  # tied weights appear under two names in the state dict, held once in memory
    with torch.inference_mode(False):  # tensor subclasses can't detach under inference mode
        for value in model.state_dict(keep_vars=True).values():
            for tensor in tree_flatten(value)[0]:
                if isinstance(tensor, torch.Tensor) and _identity(tensor) not in seen:
                    seen.add(_identity(tensor))
                    total += _tensor_bytes(tensor)
    return total


def _identity(tensor: torch.Tensor) -> object:
    """What makes two tensors the same memory: their storage and view for a plain tensor, the object otherwise."""
    if type(tensor) in (torch.Tensor, nn.Parameter) and tensor.layout == torch.strided and not tensor.is_quantized:
        return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
    return id(tensor)


def _tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor holds; a subclass (torchao's int8/int4 tensors) counts its inner tensors."""
    if type(tensor) not in (torch.Tensor, nn.Parameter) and hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()
