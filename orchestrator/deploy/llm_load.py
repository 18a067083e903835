"""Load a decoder LLM's export: the Hugging Face folder of float weights, then the quantization its manifest records.

The manifest's files were verified (size, SHA-256) before anything here runs; the model and tokenizer folders must
hold nothing else, since transformers picks the files of a folder by their names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from orchestrator.deploy._errors import UnsafeExport
from orchestrator.deploy.manifest import LoadQuantization, Manifest
from orchestrator.errors import InputError


def apply_quantization(model: nn.Module, spec: LoadQuantization | None) -> nn.Module:
    """The float CausalLM quantized as `spec` says (the same functions the trial's stage ran); as is for None."""
    if spec is None:
        return model
    model = model.cpu().eval()
    if spec.method == "half":
        return model.to(torch.bfloat16 if spec.dtype == "bf16" else torch.float16).eval()
    if spec.method == "weight_only":
        from orchestrator.compress.weight_only import weight_only_quantize  # at call time: the module is new

        quantized, _ = weight_only_quantize(model, spec.bits, spec.group_size or 32, spec.lm_head_bits)
        return quantized.eval()
    if spec.method == "dynamic_int8":
        return _dynamic_int8(model, spec)
    if spec.method == "fake_int4":
        from orchestrator.compress.prune import prunable_weights
        from orchestrator.compress.quantize import fake_quantize

        with torch.no_grad():
            for _, module in prunable_weights(model):
                module.weight.copy_(fake_quantize(module.weight, 4, spec.group_size))
        return model
    raise InputError(f"manifest generation.quantization.method: {spec.method!r} is not one this Hedgerow applies")


def check_only_listed(root: Path, manifest: Manifest) -> None:
    """Refuse a file in the model or tokenizer folder that the manifest does not list: transformers reads a folder
    by the names it finds there, so an added file (a second weights file, an index) must not be read unverified."""
    spec = manifest.generation
    if spec is None:
        return
    listed = {entry.path for entry in manifest.files}
    for folder in dict.fromkeys((spec.model_dir, spec.tokenizer)):
        base = root / folder
        if base.is_symlink() or not base.is_dir():
            raise UnsafeExport(f"{base}: the manifest's {folder!r} folder is missing or not a plain folder; refused")
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or (path.is_file() and rel not in listed):
                raise UnsafeExport(f"{rel}: not one of the manifest's verified files; refused (remove it, or re-export)")


def load_causal_lm_folder(folder: Path) -> nn.Module:
    """The float32 CausalLM of an export's model folder (safetensors only, no remote code, nothing downloaded)."""
    from transformers import AutoModelForCausalLM

    from orchestrator.tasks.llm.model import CausalLM

    try:
        hf = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False, dtype="float32"
        )
    except Exception as exc:  # noqa: BLE001  (a config or weights transformers cannot read)
        raise InputError(f"{folder}: transformers cannot load this model folder: {type(exc).__name__}: {exc}") from None
    return CausalLM(hf.eval())


def load_llm_module(root: Path, manifest: Manifest, device: torch.device) -> nn.Module:
    """The export's CausalLM, float weights loaded and the manifest's quantization applied, on `device`."""
    spec = manifest.generation
    assert spec is not None
    check_only_listed(root, manifest)
    quantization = spec.quantization
    if device.type != "cpu" and quantization is not None and quantization.method != "half":
        raise InputError(
            f"device {str(device)!r}: this export's {quantization.method} quantization runs on the CPU only; load it with device='cpu'"
        )
    model = apply_quantization(load_causal_lm_folder(root / spec.model_dir), quantization)
    return model.to(device).eval()


def load_tokenizer(folder: Path) -> Any:
    """The export's own tokenizer (its files verified against the manifest); never fetched from a hub."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{folder}: transformers cannot load the tokenizer: {type(exc).__name__}: {exc}") from None


def _dynamic_int8(model: nn.Module, spec: LoadQuantization) -> nn.Module:
    """Dynamic int8 (W8A8) on every Linear; with lm_head_bits 32 or 4 the head is skipped, then made weight-only int4
    where 4 (as compress.quantize's int8_head stage does)."""
    from orchestrator.compress.quantize import dynamic_int8, dynamic_int8_with_head

    if spec.lm_head_bits not in (32, 4):
        return dynamic_int8(model).eval()
    return dynamic_int8_with_head(model, spec.lm_head_bits, spec.group_size or 32)[0].eval()
