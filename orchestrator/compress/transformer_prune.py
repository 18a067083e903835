"""Structured pruning of BERT-style encoders: attention heads, FFN neurons and whole layers.

Each knob really removes weights (smaller Linear layers, a shorter layer list), so the
pruned model is faster as well as smaller. Which teacher layers, heads and neurons
survive is kept as plain attributes on the pruned modules (never in the state_dict), so
`structure_of` can always describe the shape relative to the original teacher and
`apply_structure` can rebuild it on a fresh copy before `load_state_dict(strict=True)`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from orchestrator.techniques import Context, StepRecord, TechniqueConfig, register

MAX_PRUNE_RATIO = 0.95

# Plain (non-state) attributes recording original-teacher indices on the pruned modules.
_LAYER_INDEX = "_hedgerow_layer_index"  # on each encoder layer
_KEPT_HEADS = "_hedgerow_kept_heads"  # on attention.self
_KEPT_FFN = "_hedgerow_kept_ffn"  # on intermediate

_NEEDS = "needs a BERT-style encoder (layers with attention.self.query/key/value, intermediate.dense, output.dense)"


class HeadPruneConfig(TechniqueConfig):
    """Remove round(ratio × heads) attention heads in every layer, the smallest by L2 magnitude."""

    ratio: float = Field(ge=0.0, le=MAX_PRUNE_RATIO)


class FFNPruneConfig(TechniqueConfig):
    """Remove round(ratio × intermediate_size) feed-forward neurons in every layer, the smallest by L2 magnitude."""

    ratio: float = Field(ge=0.0, le=MAX_PRUNE_RATIO)


class LayerDropConfig(TechniqueConfig):
    """Keep `keep_layers` evenly spaced encoder layers (always including the last) and drop the rest."""

    keep_layers: int = Field(ge=1)


# --- finding and describing the encoder -------------------------------------------------------


def _is_bert_layer(module: nn.Module) -> bool:
    try:
        attn = module.attention
        return all(
            isinstance(m, nn.Linear)
            for m in (
                attn.self.query,
                attn.self.key,
                attn.self.value,
                attn.output.dense,
                module.intermediate.dense,
                module.output.dense,
            )
        )
    except AttributeError:
        return False


def _find_encoder(model: nn.Module) -> tuple[str, nn.ModuleList]:
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) > 0 and all(_is_bert_layer(layer) for layer in m)
    ]
    if not found:
        raise ValueError(f"transformer pruning {_NEEDS}; found none in {type(model).__name__}")
    if len(found) > 1:
        names = ", ".join(name or "<root>" for name, _ in found)
        raise ValueError(f"transformer pruning needs exactly one BERT-style encoder; found {len(found)}: {names}")
    return found[0]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's layer list, found anywhere inside `model` (wrappers included)."""
    return _find_encoder(model)[1]


def _head_size(attn_self: nn.Module) -> int:
    return int(attn_self.attention_head_size)


def _kept_heads(attn_self: nn.Module) -> list[int]:
    current = attn_self.query.out_features // _head_size(attn_self)
    return list(getattr(attn_self, _KEPT_HEADS, range(current)))


def _kept_ffn(layer: nn.Module) -> list[int]:
    return list(getattr(layer.intermediate, _KEPT_FFN, range(layer.intermediate.dense.out_features)))


def structure_of(model: nn.Module) -> dict[str, list]:
    """The pruned shape as original-teacher indices: kept layers, and kept heads and FFN neurons per layer."""
    layers = encoder_layers(model)
    structure = {
        "kept_layers": [int(getattr(layer, _LAYER_INDEX, i)) for i, layer in enumerate(layers)],
        "kept_heads": [_kept_heads(layer.attention.self) for layer in layers],
        "kept_ffn": [_kept_ffn(layer) for layer in layers],
    }
    for layer, heads, ffn in zip(layers, structure["kept_heads"], structure["kept_ffn"]):
        # The attributes are only trustworthy if nothing reshaped the layer behind our back.
        if len(heads) * _head_size(layer.attention.self) != layer.attention.self.query.out_features:
            raise RuntimeError("recorded kept heads do not match the attention's width; was it pruned elsewhere?")
        if len(ffn) != layer.intermediate.dense.out_features:
            raise RuntimeError("recorded kept FFN neurons do not match intermediate.dense; was it pruned elsewhere?")
    return structure


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- slicing ----------------------------------------------------------------------------------


def _positions(current: list[int], keep: list[int], what: str) -> list[int]:
    """Positions in the current (possibly already pruned) module of the original indices to keep."""
    where = {orig: pos for pos, orig in enumerate(current)}
    missing = [k for k in keep if k not in where]
    if missing:
        raise ValueError(f"{what}: indices {missing} are not present (have {current})")
    return [where[k] for k in keep]


def _removed(n: int, keep_positions: list[int]) -> list[int]:
    kept = set(keep_positions)
    return [i for i in range(n) if i not in kept]


def _keep_heads(layer: nn.Module, keep: list[int]) -> None:
    """Slice one layer's attention down to the heads `keep` (original indices, ascending)."""
    attn_self = layer.attention.self
    current = _kept_heads(attn_self)
    positions = _positions(current, keep, "kept_heads")
    size = _head_size(attn_self)
    gone = [p * size + j for p in _removed(len(current), positions) for j in range(size)]
    if gone:
        with torch.no_grad():
            for linear in (attn_self.query, attn_self.key, attn_self.value):
                tp.prune_linear_out_channels(linear, gone)
            tp.prune_linear_in_channels(layer.attention.output.dense, gone)
    # The forward reshapes with -1 heads and scales by the (unchanged) head size; these two are
    # the only attributes derived from the head count. The shared config is left alone: its
    # num_attention_heads still defines the head size a fresh model is built with.
    attn_self.num_attention_heads = len(keep)
    attn_self.all_head_size = len(keep) * size
    setattr(attn_self, _KEPT_HEADS, list(keep))


def _keep_ffn(layer: nn.Module, keep: list[int]) -> None:
    """Slice one layer's feed-forward block down to the neurons `keep` (original indices, ascending)."""
    current = _kept_ffn(layer)
    gone = _removed(len(current), _positions(current, keep, "kept_ffn"))
    if gone:
        with torch.no_grad():
            tp.prune_linear_out_channels(layer.intermediate.dense, gone)
            tp.prune_linear_in_channels(layer.output.dense, gone)
    setattr(layer.intermediate, _KEPT_FFN, list(keep))


def _keep_layers(model: nn.Module, keep: list[int]) -> None:
    """Replace the encoder's layer list by the layers `keep` (original indices, ascending)."""
    name, layers = _find_encoder(model)
    current = [int(getattr(layer, _LAYER_INDEX, i)) for i, layer in enumerate(layers)]
    positions = _positions(current, keep, "kept_layers")
    for pos, orig in zip(positions, keep):
        setattr(layers[pos], _LAYER_INDEX, orig)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, attr, nn.ModuleList([layers[p] for p in positions]))
    # Configs of the modules holding the encoder (e.g. BertModel, BertEncoder) describe its depth.
    for module_name, module in model.named_modules():
        config = getattr(module, "config", None)
        holds_encoder = module_name == "" or name.startswith(module_name + ".")
        if holds_encoder and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(keep)


def _importance_order(scores: torch.Tensor, n_keep: int) -> list[int]:
    """Indices of the n_keep largest scores, ascending; ties keep the earlier index."""
    order = torch.argsort(-scores, stable=True)[:n_keep]
    return sorted(int(i) for i in order)


def apply_structure(model: nn.Module, structure: dict[str, Any]) -> nn.Module:
    """Prune `model` (unpruned, or pruned less) to `structure`, e.g. to rebuild a shape before loading weights."""
    keep_layers = [int(i) for i in structure["kept_layers"]]
    heads, ffn = structure["kept_heads"], structure["kept_ffn"]
    if not (len(keep_layers) == len(heads) == len(ffn)):
        raise ValueError(
            "structure: kept_layers, kept_heads and kept_ffn must have one entry per kept layer; "
            f"got {len(keep_layers)}, {len(heads)}, {len(ffn)}"
        )
    model = model.cpu().eval()
    _keep_layers(model, keep_layers)
    for layer, layer_heads, layer_ffn in zip(encoder_layers(model), heads, ffn):
        _keep_heads(layer, sorted(int(h) for h in layer_heads))
        _keep_ffn(layer, sorted(int(n) for n in layer_ffn))
    return model


# --- importance -------------------------------------------------------------------------------


def head_importance(layer: nn.Module) -> torch.Tensor:
    """Per-head L2 importance: summed norms of the head's query/key/value rows and output-dense columns."""
    attn_self = layer.attention.self
    size = _head_size(attn_self)
    with torch.no_grad():
        scores = sum(
            linear.weight.reshape(-1, size, linear.in_features).norm(dim=(1, 2))
            for linear in (attn_self.query, attn_self.key, attn_self.value)
        )
        out = layer.attention.output.dense.weight
        scores = scores + out.reshape(out.shape[0], -1, size).norm(dim=(0, 2))
    return scores


def ffn_importance(layer: nn.Module) -> torch.Tensor:
    """Per-neuron L2 importance: intermediate.dense row norm + output.dense column norm."""
    with torch.no_grad():
        return layer.intermediate.dense.weight.norm(dim=1) + layer.output.dense.weight.norm(dim=0)


def layer_drop_indices(n: int, keep: int) -> list[int]:
    """Evenly spaced positions of `keep` of `n` layers, ending at the last: ((i + 1) · n) // keep − 1.

    6 → 3 keeps [1, 3, 5] (DistilBERT-style alternate layers); 12 → 4 keeps [2, 5, 8, 11];
    keep 1 keeps only the last layer, whose output the head was trained on.
    """
    return [((i + 1) * n) // keep - 1 for i in range(keep)]


# --- handlers ---------------------------------------------------------------------------------


def _record(technique: str, config: TechniqueConfig, params_before: int, model: nn.Module, **extra: Any) -> StepRecord:
    details = {"params_before": params_before, "params_after": _n_params(model), **extra, "structure": structure_of(model)}
    return StepRecord(stage="prune", technique=technique, config=config.model_dump(), details=details)


@register(HeadPruneConfig)
def prune_heads(model: nn.Module, config: HeadPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Remove the least important attention heads, the same number in every layer."""
    model = model.cpu().eval()
    layers = encoder_layers(model)
    params_before = _n_params(model)
    for layer in layers:
        current = _kept_heads(layer.attention.self)
        n_remove = round(config.ratio * len(current))
        if n_remove >= len(current):
            limit = (len(current) - 0.5) / len(current)
            raise ValueError(
                f"prune_heads_ratio: {config.ratio} would remove all {len(current)} attention heads of a layer "
                f"(round({config.ratio} × {len(current)}) = {n_remove}); expected a ratio below {limit:.4g} "
                "so that at least one head per layer stays"
            )
    removed = _remove_least_important(
        layers, config.ratio, lambda layer: _kept_heads(layer.attention.self), head_importance, _keep_heads
    )
    return model, _record("heads", config, params_before, model, heads_removed_per_layer=removed)


@register(FFNPruneConfig)
def prune_ffn(model: nn.Module, config: FFNPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Remove the least important feed-forward neurons in every layer (Torch-Pruning's Linear slicing)."""
    model = model.cpu().eval()
    layers = encoder_layers(model)
    params_before = _n_params(model)
    for layer in layers:
        width = layer.intermediate.dense.out_features
        if round(config.ratio * width) >= width:
            raise ValueError(
                f"prune_ffn_ratio: {config.ratio} would remove all {width} feed-forward neurons of a layer; "
                "expected a ratio that leaves at least one"
            )
    removed = _remove_least_important(layers, config.ratio, _kept_ffn, ffn_importance, _keep_ffn)
    return model, _record("ffn", config, params_before, model, ffn_removed_per_layer=removed)


def _remove_least_important(
    layers: nn.ModuleList,
    ratio: float,
    kept: Callable[[nn.Module], list[int]],
    importance: Callable[[nn.Module], torch.Tensor],
    keep: Callable[[nn.Module, list[int]], None],
) -> list[int]:
    """In every layer, keep all but round(ratio × units) units, the most important; return how many went per layer."""
    removed = []
    for layer in layers:
        current = kept(layer)
        n_keep = len(current) - round(ratio * len(current))
        keep(layer, [current[p] for p in _importance_order(importance(layer), n_keep)])
        removed.append(len(current) - n_keep)
    return removed


@register(LayerDropConfig)
def drop_layers(model: nn.Module, config: LayerDropConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Keep evenly spaced encoder layers (see `layer_drop_indices`) and drop the rest."""
    model = model.cpu().eval()
    layers = encoder_layers(model)
    n = len(layers)
    if not 1 <= config.keep_layers <= n:
        raise ValueError(
            f"keep_layers: cannot keep {config.keep_layers} layers; the encoder has {n}, so 1..{n} is allowed"
        )
    params_before = _n_params(model)
    current = [int(getattr(layer, _LAYER_INDEX, i)) for i, layer in enumerate(layers)]
    keep = [current[p] for p in layer_drop_indices(n, config.keep_layers)]
    if config.keep_layers < n:
        with torch.no_grad():
            _keep_layers(model, keep)
    return model, _record("layers", config, params_before, model, layers_before=n)
