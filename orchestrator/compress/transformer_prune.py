"""Structured pruning of transformers: attention heads, FFN neurons and whole layers.

Each family (BERT-named, DistilBERT, ModernBERT, DeBERTa encoders; Llama-style decoders with
grouped-query attention, pruned by whole key-value groups; see `encoder_families`) is a
description of where its projections are; the slicing below is the same for all of them.
An encoder of no known family gets a description from its config and the shapes of its
Linear layers, accepted only if pruning a silenced head and neuron of one layer changes
nothing (`_slices_cleanly`).

Each knob really removes weights (smaller Linear layers, a shorter layer list), so the
pruned model is faster as well as smaller. Which teacher layers, heads and neurons
survive is kept as plain attributes on the pruned modules (never in the state_dict), so
`structure_of` can always describe the shape relative to the original teacher and
`apply_structure` can rebuild it on a fresh copy before `load_state_dict(strict=True)`.
A family whose config is saved with the model (a Hugging Face decoder) has it kept true, so
`save_pretrained` then `from_pretrained` builds the pruned shape.

Depth is pruned by `keep_layers` (evenly spaced) or `drop_layers` (the blocks of least block
influence, measured once on calibration batches; see `layer_importance`, or evenly spaced).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Literal, Mapping

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from orchestrator.compress.encoder_families import EncoderFamily, discover_family, family_of, needs_message
from orchestrator.compress.layer_importance import (
    block_influence,
    ffn_importance,
    head_importance,
    layer_drop_indices,
    least_influential,
)
from orchestrator.compress.prune import MAX_PRUNE_RATIO
from orchestrator.errors import InputError
from orchestrator.techniques import Context, Knob, Knobs, Stage, StepRecord, Technique, TechniqueConfig
from orchestrator.techniques.details import PruneDetails
from orchestrator.techniques.domains import Range, candidate_values, mildest_ratio

# Plain (non-state) attributes recording original-teacher indices on the pruned modules.
_LAYER_INDEX = "_hedgerow_layer_index"  # on each encoder layer
_KEPT_HEADS = "_hedgerow_kept_heads"  # on the attention module (BERT: attention.self)
_KEPT_FFN = "_hedgerow_kept_ffn"  # on the FFN input's parent (BERT: intermediate)

# What a model that fits no family can still take, for the error message.
_STILL_APPLIES = "bits 8 (int8), runtime, and distillation (kd_steps, without kd_hidden_weight)"


class HeadPruneConfig(TechniqueConfig):
    """Remove round(ratio × heads) attention heads in every layer, the smallest by L2 magnitude; with grouped-query
    attention, round(ratio × key-value heads) whole groups (a key-value head and the query heads it serves)."""

    stage = Stage.PRUNE
    ratio: float = Field(ge=0.0, le=MAX_PRUNE_RATIO)


class FFNPruneConfig(TechniqueConfig):
    """Remove round(ratio × intermediate_size) feed-forward neurons in every layer, the smallest by L2 magnitude."""

    stage = Stage.PRUNE
    ratio: float = Field(ge=0.0, le=MAX_PRUNE_RATIO)


class LayerDropConfig(TechniqueConfig):
    """Keep `keep_layers` evenly spaced encoder layers (always including the last) and drop the rest."""

    stage = Stage.PRUNE
    keep_layers: int = Field(ge=1)


LayerImportance = Literal["block_influence", "even"]


class BlockDropConfig(TechniqueConfig):
    """Drop the `n_drop` blocks of lowest block influence (measured once on calibration batches), or evenly spaced."""

    stage = Stage.PRUNE
    n_drop: int = Field(ge=1)
    importance: LayerImportance = "block_influence"
    calibration_batches: int = Field(4, ge=1)
    calibration_batch_size: int = Field(4, ge=1)


# --- finding and describing the encoder -------------------------------------------------------


def _family_of_list(layers: nn.ModuleList) -> EncoderFamily | None:
    family = family_of(layers[0]) if len(layers) > 0 else None
    return family if family is not None and all(family.matches(layer) for layer in layers) else None


def _config_above(model: nn.Module, name: str) -> Any:
    """The config of the innermost module holding the module `name` that has one."""
    holders = [m for n, m in model.named_modules() if n == "" or name.startswith(n + ".")]
    return next((m.config for m in reversed(holders) if getattr(m, "config", None) is not None), None)


def _model_class(model: nn.Module) -> str:
    """The class a user knows the model by: the outermost module holding a config of its own (a Hugging Face model
    inside our pooling or logits wrapper, whose `config` may be a property reading it), else the model's own class."""
    inner = next((m for m in model.modules() if vars(m).get("config") is not None), model)
    return type(inner).__name__


def _layers_found(model: nn.Module, lists: list[tuple[str, nn.ModuleList]]) -> str:
    """The architecture found, for a refusal: its model type and its longest list of layers of one class."""
    inner = next((m for m in model.modules() if vars(m).get("config") is not None), None)
    model_type = getattr(getattr(inner, "config", None), "model_type", None)
    found = f"model_type {model_type!r}; " if model_type else ""
    uniform = [(name, m) for name, m in lists if len({type(layer) for layer in m}) == 1]
    if not uniform:
        return found + "no list of layers"
    name, layers = max(uniform, key=lambda item: len(item[1]))
    return found + f"its layers: {name}[i], {len(layers)} × {type(layers[0]).__name__}"


def _find_encoder(model: nn.Module) -> tuple[str, nn.ModuleList, EncoderFamily]:
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    found = [(name, m, family) for name, m in lists if (family := _family_of_list(m)) is not None]
    if not found:  # no family from the table: one described by the config and the shapes, if unambiguous
        for name, m in lists:
            holder = model.get_submodule(name.rpartition(".")[0])
            if (family := discover_family(m, holder, _config_above(model, name), _slices_cleanly)) is not None:
                found.append((name, m, family))
    if not found:
        name = _model_class(model)
        raise ValueError(
            f"{name} fits no encoder layout (nor decoder layout) transformer pruning knows ({_layers_found(model, lists)})"
            f"; the knobs that still apply to {name}: {_STILL_APPLIES}. Transformer pruning {needs_message()}"
        )
    if len(found) > 1:
        names = ", ".join(name or "<root>" for name, _, _ in found)
        raise ValueError(f"transformer pruning needs exactly one BERT-style encoder; found {len(found)}: {names}")
    return found[0]


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's layer list, found anywhere inside `model` (wrappers included)."""
    return _find_encoder(model)[1]


def encoder_family(model: nn.Module) -> EncoderFamily:
    """The family (layout description) of the encoder inside `model`."""
    return _find_encoder(model)[2]


def _kept_heads(layer: nn.Module, family: EncoderFamily) -> list[int]:
    return list(getattr(family.attention(layer), _KEPT_HEADS, range(family.n_heads(layer))))


def _kept_ffn(layer: nn.Module, family: EncoderFamily) -> list[int]:
    return list(getattr(family.ffn(layer), _KEPT_FFN, range(family.ffn_width(layer))))


def structure_of(model: nn.Module) -> dict[str, list]:
    """The pruned shape as original-teacher indices: kept layers, and kept heads and FFN neurons per layer."""
    _, layers, family = _find_encoder(model)
    structure = {
        "kept_layers": [int(getattr(layer, _LAYER_INDEX, i)) for i, layer in enumerate(layers)],
        "kept_heads": [_kept_heads(layer, family) for layer in layers],
        "kept_ffn": [_kept_ffn(layer, family) for layer in layers],
    }
    for layer, heads, ffn in zip(layers, structure["kept_heads"], structure["kept_ffn"]):
        # The attributes are only trustworthy if nothing reshaped the layer behind our back.
        if len(heads) != family.n_heads(layer):
            raise RuntimeError("recorded kept heads do not match the attention's width; was it pruned elsewhere?")
        if len(ffn) != family.ffn_width(layer):
            raise RuntimeError(f"recorded kept FFN neurons do not match {family.ffn_out}; was it pruned elsewhere?")
    return structure


def prunable_units(model: nn.Module) -> dict[str, int]:
    """How many units each structural knob takes a count or a share of in `model` (its first layer), by knob name:
    layers (keep_layers, drop_layers), key-value groups or heads (prune_heads_ratio), FFN neurons (prune_ffn_ratio)."""
    _, layers, family = _find_encoder(model)
    return {
        "keep_layers": len(layers),
        "drop_layers": len(layers),
        "prune_heads_ratio": len(_kept_groups(layers[0], family)),
        "prune_ffn_ratio": len(_kept_ffn(layers[0], family)),
    }


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


def _head_rows(family: EncoderFamily, n_heads: int, size: int, heads: list[int]) -> list[int]:
    """Output rows of one q/k/v projection (or of the fused one, in each of its q, k, v blocks) of `heads`."""
    rows = [h * size + j for h in heads for j in range(size)]
    if not family.fused:
        return rows
    return [block * n_heads * size + r for block in range(3) for r in rows]


def _kept_groups(layer: nn.Module, family: EncoderFamily) -> list[int]:
    """The key-value heads kept (original indices): query head h belongs to group h // group size (the heads
    themselves without grouping)."""
    group = family.group(layer)
    return [h // group for h in _kept_heads(layer, family)[::group]]


def _keep_groups(layer: nn.Module, groups: list[int], family: EncoderFamily) -> None:
    """Slice one layer's attention down to the key-value groups `groups` (original indices, ascending)."""
    group = family.group(layer)
    _keep_heads(layer, [g * group + j for g in groups for j in range(group)], family)


def _keep_heads(layer: nn.Module, keep: list[int], family: EncoderFamily) -> None:
    """Slice one layer's attention down to the query heads `keep` (original indices, ascending): with grouped-query
    attention, whole groups, whose key-value heads go with them."""
    attention = family.attention(layer)
    current = _kept_heads(layer, family)
    positions = _positions(current, keep, "kept_heads")
    size, group = family.head_size_of(layer), family.group(layer)
    if any(p % group != i % group or (i % group and p != positions[i - 1] + 1) for i, p in enumerate(positions)):
        raise ValueError(
            f"kept_heads: {keep} splits a key-value group; each key-value head serves {group} consecutive query "
            "heads, which are kept or removed together"
        )
    if len(positions) % group:
        raise ValueError(f"kept_heads: {keep} is not a whole number of key-value groups of {group} query heads")
    removed = _removed(len(current), positions)
    gone = [p * size + j for p in removed for j in range(size)]
    if gone:
        rows = _head_rows(family, len(current), size, removed)
        kv_rows = [g * size + j for g in sorted({p // group for p in removed}) for j in range(size)]
        with torch.no_grad():
            for index, linear in enumerate(family.projections(layer)):
                tp.prune_linear_out_channels(linear, kv_rows if index > 0 and group > 1 else rows)
            tp.prune_linear_in_channels(family.linear(layer, family.attn_out), gone)
    # Only the attributes the family names are derived from the head count; the head size is
    # unchanged. The shared config is left alone: its num_attention_heads still defines the
    # head size a fresh model is built with.
    for attr in family.head_count:
        setattr(attention, attr, len(keep))
    for attr in family.head_width:
        setattr(attention, attr, len(keep) * size)
    for attr in family.head_groups:
        setattr(attention, attr, group)
    setattr(attention, _KEPT_HEADS, list(keep))


def _keep_ffn(layer: nn.Module, keep: list[int], family: EncoderFamily) -> None:
    """Slice one layer's feed-forward block down to the neurons `keep` (original indices, ascending).

    In a gated FFN a neuron is an (input, gate) pair of rows of the input projection; both go together,
    as do its rows of every FFN input (a separate gate and up projection).
    """
    current = _kept_ffn(layer, family)
    gone = _removed(len(current), _positions(current, keep, "kept_ffn"))
    if gone:
        rows = gone + [len(current) + g for g in gone] if family.gated else gone
        with torch.no_grad():
            for path in family.ffn_inputs:
                tp.prune_linear_out_channels(family.linear(layer, path), rows)
            tp.prune_linear_in_channels(family.linear(layer, family.ffn_out), gone)
    for attr in family.ffn_count:
        setattr(family.ffn(layer), attr, len(keep))
    setattr(family.ffn(layer), _KEPT_FFN, list(keep))


def _keep_layers(model: nn.Module, keep: list[int]) -> None:
    """Replace the encoder's layer list by the layers `keep` (original indices, ascending)."""
    name, layers, family = _find_encoder(model)
    current = [int(getattr(layer, _LAYER_INDEX, i)) for i, layer in enumerate(layers)]
    positions = _positions(current, keep, "kept_layers")
    for pos, orig in zip(positions, keep):
        setattr(layers[pos], _LAYER_INDEX, orig)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    setattr(parent, attr, nn.ModuleList([layers[p] for p in positions]))
    for depth in family.depth:
        if hasattr(parent, depth):
            setattr(parent, depth, len(keep))
    for index, layer in enumerate(getattr(parent, attr)):
        for path in family.layer_index:
            holder_path, _, attribute = path.rpartition(".")
            holder = layer.get_submodule(holder_path)
            if hasattr(holder, attribute):
                setattr(holder, attribute, index)  # the KV cache is indexed by position, not by the teacher's index
    # Configs of the modules holding the encoder (e.g. BertModel, BertEncoder) describe its depth,
    # and some (ModernBERT's and Qwen2's layer_types) hold one entry per layer.
    for config in _configs_holding(model, name):
        per_layer = getattr(config, "layer_types", None)
        if isinstance(per_layer, list) and len(per_layer) == len(layers):
            config.layer_types = [per_layer[p] for p in positions]
        config.num_hidden_layers = len(keep)


def _configs_holding(model: nn.Module, name: str) -> list[Any]:
    """The configs (each once) of the modules holding the layer list `name` that describe its depth."""
    configs = {}
    for module_name, module in model.named_modules():
        config = getattr(module, "config", None)
        holds_encoder = module_name == "" or name.startswith(module_name + ".")
        if holds_encoder and hasattr(config, "num_hidden_layers"):
            configs[id(config)] = config
    return list(configs.values())


def _sync_config(model: nn.Module) -> None:
    """Keep the sizes a family's config holds (heads, key-value heads, FFN width, head size) true to its layers, so
    the config a Hugging Face decoder saves builds the pruned shape; refused where the layers differ in one."""
    name, layers, family = _find_encoder(model)
    if not family.config_sizes:
        return
    measure = {"heads": family.n_heads, "kv_heads": family.n_kv_heads, "ffn": family.ffn_width,
               "head_size": family.head_size_of}  # fmt: skip
    values = {}
    for role, attribute in family.config_sizes:
        sizes = sorted({measure[role](layer) for layer in layers})
        if len(sizes) > 1:
            raise ValueError(
                f"structure: the layers of a {family.name} model must share one {attribute} (its config holds one "
                f"for every layer); got {sizes}"
            )
        values[attribute] = sizes[0]
    for config in _configs_holding(model, name):
        for attribute, value in values.items():
            setattr(config, attribute, value)


def _first_tensor(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


def _slices_cleanly(family: EncoderFamily, layer: nn.Module, x: torch.Tensor) -> bool:
    """Whether a copy of `layer` whose head 0 and FFN neuron 0 are silenced computes the same with both pruned.

    Silencing zeroes only their output columns, so the check confirms that the q/k/v rows removed
    belong to the same head as those columns, that gated rows go in pairs, and that the forward
    still runs after the head-count attributes are updated.
    """
    try:
        with torch.no_grad():
            silenced = copy.deepcopy(layer).eval()
            heads, width, size = family.n_heads(silenced), family.ffn_width(silenced), family.head_size_of(silenced)
            if heads < 2 or width < 2:
                return False
            family.linear(silenced, family.attn_out).weight[:, :size] = 0
            family.linear(silenced, family.ffn_out).weight[:, 0] = 0
            before = _first_tensor(silenced(x))
            pruned = copy.deepcopy(silenced)
            _keep_heads(pruned, list(range(1, heads)), family)
            _keep_ffn(pruned, list(range(1, width)), family)
            after = _first_tensor(pruned(x))
    except Exception:  # a forward that breaks once pruned means the description is wrong
        return False
    return before.shape == after.shape and torch.allclose(before, after, rtol=1e-4, atol=1e-5)


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
    _, layers, family = _find_encoder(model)
    for layer, layer_heads, layer_ffn in zip(layers, heads, ffn):
        _keep_heads(layer, sorted(int(h) for h in layer_heads), family)
        _keep_ffn(layer, sorted(int(n) for n in layer_ffn), family)
    _sync_config(model)
    return model


# --- handlers ---------------------------------------------------------------------------------


def _record(technique: str, config: TechniqueConfig, params_before: int, model: nn.Module, **extra: Any) -> StepRecord:
    details = {"params_before": params_before, "params_after": _n_params(model), **extra, "structure": structure_of(model)}
    return StepRecord.of(config, technique, details=details)


def prune_heads(model: nn.Module, config: HeadPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Remove the least important attention heads (key-value groups, with grouped-query attention), the same number
    in every layer."""
    model = model.cpu().eval()
    _, layers, family = _find_encoder(model)
    params_before = _n_params(model)
    for layer in layers:
        current = _kept_groups(layer, family)
        n_remove = round(config.ratio * len(current))
        if n_remove >= len(current):
            limit = (len(current) - 0.5) / len(current)
            what = "attention heads" if family.group(layer) == 1 else "key-value groups"
            raise ValueError(
                f"prune_heads_ratio: {config.ratio} would remove all {len(current)} {what} of a layer "
                f"(round({config.ratio} × {len(current)}) = {n_remove}); expected a ratio below {limit:.4g} "
                "so that at least one head per layer stays"
            )
    groups = [family.group(layer) for layer in layers]
    removed = _remove_least_important(layers, config.ratio, family, _kept_groups, head_importance, _keep_groups)
    _sync_config(model)
    extra = {"heads_removed_per_layer": [n * g for n, g in zip(removed, groups)]}
    if any(g > 1 for g in groups):
        extra["kv_groups_removed_per_layer"] = removed
    return model, _record("heads", config, params_before, model, **extra)


def prune_ffn(model: nn.Module, config: FFNPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Remove the least important feed-forward neurons in every layer (Torch-Pruning's Linear slicing)."""
    model = model.cpu().eval()
    _, layers, family = _find_encoder(model)
    params_before = _n_params(model)
    for layer in layers:
        width = family.ffn_width(layer)
        if round(config.ratio * width) >= width:
            raise ValueError(
                f"prune_ffn_ratio: {config.ratio} would remove all {width} feed-forward neurons of a layer; "
                "expected a ratio that leaves at least one"
            )
    removed = _remove_least_important(layers, config.ratio, family, _kept_ffn, ffn_importance, _keep_ffn)
    _sync_config(model)
    return model, _record("ffn", config, params_before, model, ffn_removed_per_layer=removed)


def _remove_least_important(
    layers: nn.ModuleList,
    ratio: float,
    family: EncoderFamily,
    kept: Callable[[nn.Module, EncoderFamily], list[int]],
    importance: Callable[[nn.Module, EncoderFamily], torch.Tensor],
    keep: Callable[[nn.Module, list[int], EncoderFamily], None],
) -> list[int]:
    """In every layer, keep all but round(ratio × units) units, the most important; return how many went per layer."""
    removed = []
    for layer in layers:
        current = kept(layer, family)
        n_keep = len(current) - round(ratio * len(current))
        keep(layer, [current[p] for p in _importance_order(importance(layer, family), n_keep)], family)
        removed.append(len(current) - n_keep)
    return removed


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
    _sync_config(model)
    return model, _record("layers", config, params_before, model, layers_before=n)


def drop_blocks(model: nn.Module, config: BlockDropConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Drop the `n_drop` blocks of lowest block influence (ShortGPT; measured once, on the model as given, over the
    task's calibration batches) or, by `even` importance, keep the rest evenly spaced (see `layer_drop_indices`)."""
    model = model.cpu().eval()
    layers = encoder_layers(model)
    n = len(layers)
    if not 1 <= config.n_drop < n:
        raise InputError(
            f"drop_layers: cannot drop {config.n_drop} of the model's {n} layers; 1..{n - 1} is allowed "
            "(at least one layer stays)"
        )
    params_before = _n_params(model)
    current = [int(getattr(layer, _LAYER_INDEX, i)) for i, layer in enumerate(layers)]
    extra: dict[str, Any] = {"layers_before": n, "layer_importance": config.importance}
    if config.importance == "even":
        keep_positions = layer_drop_indices(n, n - config.n_drop)
    else:
        if ctx.task is None:
            raise InputError("drop_layers: block influence is measured on the task's calibration batches; no task given")
        batches = ctx.task.calibration_batches(config.calibration_batches, config.calibration_batch_size)
        try:
            scores = block_influence(model.to(ctx.device), layers, batches, ctx.task.token_mask, device=ctx.device)
        finally:
            model.cpu()
        dropped = set(least_influential(scores, config.n_drop))
        keep_positions = [p for p in range(n) if p not in dropped]
        extra["block_influence"] = [round(float(s), 6) for s in scores]
    keep = [current[p] for p in keep_positions]
    extra["dropped_layers"] = [i for i in current if i not in keep]
    with torch.no_grad():
        _keep_layers(model, keep)
    _sync_config(model)
    return model, _record("blocks", config, params_before, model, **extra)


def teacher_structure(teacher: nn.Module) -> dict[str, list] | None:
    """The teacher encoder's structure (structure_of), or None for a model with no encoder (a CNN, an MLP)."""
    try:
        return structure_of(teacher)
    except (ValueError, RuntimeError):
        return None


def encoder_shape(before: dict[str, list] | None, steps: list[StepRecord]) -> dict[str, int]:
    """How deep and wide the candidate's encoder is, beside its teacher's (`before`, its structure): layers, heads and
    FFN neurons per layer (report/results.SHAPE_COLUMNS), from the structure its last transformer prune recorded; {} without one."""
    if before is None:
        return {}
    recorded = [PruneDetails.of(s).structure for s in reversed(steps) if s.stage is Stage.PRUNE]
    after = next((s for s in recorded if s is not None), before)

    def per_layer(structure: dict[str, list], key: str) -> int:
        return round(sum(len(kept) for kept in structure[key]) / len(structure[key]))

    shape = {}
    for prefix, structure in (("", after), ("teacher_", before)):
        shape[f"{prefix}encoder_layers"] = len(structure["kept_layers"])
        shape[f"{prefix}encoder_heads_per_layer"] = per_layer(structure, "kept_heads")
        shape[f"{prefix}encoder_ffn_per_layer"] = per_layer(structure, "kept_ffn")
    return shape


# (knob, what it prunes, the encoder shape columns that say how much is left of how much)
ENCODER_DIMS = (
    ("keep_layers", "layers", "encoder_layers", "teacher_encoder_layers"),
    ("prune_heads_ratio", "heads", "encoder_heads_per_layer", "teacher_encoder_heads_per_layer"),
    ("prune_ffn_ratio", "FFN", "encoder_ffn_per_layer", "teacher_encoder_ffn_per_layer"),
)


def _stages(recipe: Any) -> list[TechniqueConfig]:
    stages: list[TechniqueConfig] = []
    if recipe.keep_layers is not None:
        stages.append(LayerDropConfig(keep_layers=recipe.keep_layers))
    if recipe.drop_layers > 0:  # depth first: block influence is measured on the unpruned model
        stages.append(BlockDropConfig(n_drop=recipe.drop_layers, importance=recipe.layer_importance))
    if recipe.prune_heads_ratio > 0:
        stages.append(HeadPruneConfig(ratio=recipe.prune_heads_ratio))
    if recipe.prune_ffn_ratio > 0:
        stages.append(FFNPruneConfig(ratio=recipe.prune_ffn_ratio))
    return stages


def _describe(knobs: Knobs, shown: frozenset[str]) -> list[str]:
    """'4 of 6 layers', 'heads 6 of 12', 'FFN 768 of 1536' for each dimension shown (or pruned), from the encoder shape
    the trial recorded; a run from before shapes were recorded falls back to the knobs ('4 layers', 'FFN −50%')."""
    parts = []
    for knob, what, kept, total in ENCODER_DIMS:
        shaped = kept in knobs and total in knobs
        asked = knob in shown or (knob == "keep_layers" and "drop_layers" in shown)
        if shaped and (asked or int(knobs[kept]) != int(knobs[total])):
            n, of = int(knobs[kept]), int(knobs[total])
            parts.append(f"{n} of {of} layers" if what == "layers" else f"{what} {n} of {of}")
        elif knob == "keep_layers" and knob in knobs:
            parts.append(f"{int(knobs[knob])} layers")
        elif knob == "keep_layers" and int(knobs.get("drop_layers") or 0) > 0:
            parts.append(f"−{int(knobs['drop_layers'])} layers")
        elif knob in knobs and knob != "keep_layers" and float(knobs[knob] or 0) > 0:
            parts.append(f"{what} −{float(knobs[knob]) * 100:.0f}%")
    return parts


def _mildest_count(domain: Any) -> int | None:
    """The smallest whole number above 0 a domain allows (a range's first one above 0), or None."""
    if isinstance(domain, Range):
        low = max(1, math.ceil(domain.low))
        return low if low <= domain.high else None
    counts = [int(v) for v in candidate_values(domain) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    counts = [v for v in counts if v > 0]
    return min(counts) if counts else None


def _check(recipe: Any) -> list[str]:
    if recipe.keep_layers is not None and recipe.drop_layers > 0:
        return [
            f"drop_layers: set either keep_layers (layers kept, evenly spaced) or drop_layers (blocks removed), not "
            f"both; got keep_layers={recipe.keep_layers}, drop_layers={recipe.drop_layers}"
        ]
    return []


def _seeds(space: Mapping[str, Any], teacher_layers: int | None) -> list[dict[str, Any]]:
    """One layer fewer than the teacher, the fewest blocks dropped, then the smallest FFN and head ratios, each alone."""
    seeds: list[dict[str, Any]] = []
    if teacher_layers:
        fewer = [k for k in candidate_values(space.get("keep_layers")) if isinstance(k, int) and k < teacher_layers]
        if fewer:
            seeds.append({"keep_layers": max(fewer)})
    n_drop = _mildest_count(space.get("drop_layers"))
    if n_drop is not None and (not teacher_layers or n_drop < teacher_layers):
        seeds.append({"drop_layers": n_drop})
    for name in ("prune_ffn_ratio", "prune_heads_ratio"):
        ratio = mildest_ratio(space.get(name))
        if ratio is not None:
            seeds.append({name: ratio})
    return seeds


TECHNIQUE = Technique(
    name="transformer_prune",
    knobs=(
        Knob("prune_heads_ratio", float, 0.0,
             "transformers: share of attention heads (key-value groups, with grouped-query attention) removed per layer",
             {"ge": 0.0, "le": MAX_PRUNE_RATIO}),
        Knob("prune_ffn_ratio", float, 0.0, "transformers: share of FFN neurons removed per layer",
             {"ge": 0.0, "le": MAX_PRUNE_RATIO}),
        Knob("keep_layers", int | None, None, "transformers: encoder layers kept, evenly spread (None: all)", {"ge": 1}),
        Knob("drop_layers", int, 0, "transformers: decoder/encoder blocks removed (0: none)", {"ge": 0}),
        Knob("layer_importance", LayerImportance, "block_influence",
             "drop_layers: which blocks go: the least block influence (calibration), or evenly spaced",
             applies=lambda k: int(k["drop_layers"]) > 0),
    ),  # fmt: skip
    sampled_as=("keep_layers", "prune_heads_ratio", "prune_ffn_ratio", "drop_layers", "layer_importance"),
    stages=_stages,
    describe=_describe,
    seeds=_seeds,
    check=_check,
    handlers={HeadPruneConfig: prune_heads, FFNPruneConfig: prune_ffn, LayerDropConfig: drop_layers,
              BlockDropConfig: drop_blocks},  # fmt: skip
    stage_order=10,
    sample_order=20,
    seed_order=20,
)
