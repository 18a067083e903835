"""Structured pruning of transformer encoders: attention heads, FFN neurons and whole layers.

Each encoder family (BERT-named, DistilBERT, ModernBERT; see `encoder_families`) is a
description of where its projections are; the slicing below is the same for all of them.
An encoder of no known family gets a description from its config and the shapes of its
Linear layers, accepted only if pruning a silenced head and neuron of one layer changes
nothing (`_slices_cleanly`).

Each knob really removes weights (smaller Linear layers, a shorter layer list), so the
pruned model is faster as well as smaller. Which teacher layers, heads and neurons
survive is kept as plain attributes on the pruned modules (never in the state_dict), so
`structure_of` can always describe the shape relative to the original teacher and
`apply_structure` can rebuild it on a fresh copy before `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn

from orchestrator.compress.encoder_families import EncoderFamily, discover_family, family_of, needs_message
from orchestrator.compress.prune import MAX_PRUNE_RATIO
from orchestrator.techniques import Context, Knob, Knobs, Stage, StepRecord, Technique, TechniqueConfig
from orchestrator.techniques.details import PruneDetails
from orchestrator.techniques.domains import candidate_values, mildest_ratio

# Plain (non-state) attributes recording original-teacher indices on the pruned modules.
_LAYER_INDEX = "_hedgerow_layer_index"  # on each encoder layer
_KEPT_HEADS = "_hedgerow_kept_heads"  # on the attention module (BERT: attention.self)
_KEPT_FFN = "_hedgerow_kept_ffn"  # on the FFN input's parent (BERT: intermediate)

# What a model that fits no family can still take, for the error message.
_STILL_APPLIES = "bits 8 (int8), runtime, and distillation (kd_steps, without kd_hidden_weight)"


class HeadPruneConfig(TechniqueConfig):
    """Remove round(ratio × heads) attention heads in every layer, the smallest by L2 magnitude."""

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


# --- finding and describing the encoder -------------------------------------------------------


def _family_of_list(layers: nn.ModuleList) -> EncoderFamily | None:
    family = family_of(layers[0]) if len(layers) > 0 else None
    return family if family is not None and all(family.matches(layer) for layer in layers) else None


def _config_above(model: nn.Module, name: str) -> Any:
    """The config of the innermost module holding the module `name` that has one."""
    holders = [m for n, m in model.named_modules() if n == "" or name.startswith(n + ".")]
    return next((m.config for m in reversed(holders) if getattr(m, "config", None) is not None), None)


def _model_class(model: nn.Module) -> str:
    """The class a user knows the model by: the outermost module with a config (a Hugging Face model inside our
    pooling or logits wrapper), else the model's own class."""
    inner = next((m for m in model.modules() if getattr(m, "config", None) is not None), model)
    return type(inner).__name__


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
            f"{name} fits no encoder layout transformer pruning knows; the knobs that still apply to {name}: "
            f"{_STILL_APPLIES}. Transformer pruning {needs_message()}"
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


def _layer_family(layer: nn.Module) -> EncoderFamily:
    family = family_of(layer)
    if family is None:
        raise ValueError(f"transformer pruning {needs_message()}; {type(layer).__name__} is not such a layer")
    return family


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


def _keep_heads(layer: nn.Module, keep: list[int], family: EncoderFamily) -> None:
    """Slice one layer's attention down to the heads `keep` (original indices, ascending)."""
    attention = family.attention(layer)
    current = _kept_heads(layer, family)
    positions = _positions(current, keep, "kept_heads")
    size = family.head_size_of(layer)
    removed = _removed(len(current), positions)
    gone = [p * size + j for p in removed for j in range(size)]
    if gone:
        rows = _head_rows(family, len(current), size, removed)
        with torch.no_grad():
            for linear in family.projections(layer):
                tp.prune_linear_out_channels(linear, rows)
            tp.prune_linear_in_channels(family.linear(layer, family.attn_out), gone)
    # Only the attributes the family names are derived from the head count; the head size is
    # unchanged. The shared config is left alone: its num_attention_heads still defines the
    # head size a fresh model is built with.
    for attr in family.head_count:
        setattr(attention, attr, len(keep))
    for attr in family.head_width:
        setattr(attention, attr, len(keep) * size)
    setattr(attention, _KEPT_HEADS, list(keep))


def _keep_ffn(layer: nn.Module, keep: list[int], family: EncoderFamily) -> None:
    """Slice one layer's feed-forward block down to the neurons `keep` (original indices, ascending).

    In a gated FFN a neuron is an (input, gate) pair of rows of the input projection; both go together.
    """
    current = _kept_ffn(layer, family)
    gone = _removed(len(current), _positions(current, keep, "kept_ffn"))
    if gone:
        rows = gone + [len(current) + g for g in gone] if family.gated else gone
        with torch.no_grad():
            tp.prune_linear_out_channels(family.linear(layer, family.ffn_in), rows)
            tp.prune_linear_in_channels(family.linear(layer, family.ffn_out), gone)
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
    # Configs of the modules holding the encoder (e.g. BertModel, BertEncoder) describe its depth,
    # and some (ModernBERT's layer_types) hold one entry per layer.
    configs = {}
    for module_name, module in model.named_modules():
        config = getattr(module, "config", None)
        holds_encoder = module_name == "" or name.startswith(module_name + ".")
        if holds_encoder and hasattr(config, "num_hidden_layers"):
            configs[id(config)] = config
    for config in configs.values():
        per_layer = getattr(config, "layer_types", None)
        if isinstance(per_layer, list) and len(per_layer) == len(layers):
            config.layer_types = [per_layer[p] for p in positions]
        config.num_hidden_layers = len(keep)


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
    return model


# --- importance -------------------------------------------------------------------------------


def head_importance(layer: nn.Module, family: EncoderFamily | None = None) -> torch.Tensor:
    """Per-head L2 importance: summed norms of the head's query/key/value rows and attention-output columns."""
    family = family or _layer_family(layer)
    size = family.head_size_of(layer)
    with torch.no_grad():
        if family.fused:
            weight = family.projections(layer)[0].weight
            blocks = weight.reshape(3, -1, size, weight.shape[1]).norm(dim=(2, 3))
            scores = blocks[0] + blocks[1] + blocks[2]
        else:
            scores = sum(
                linear.weight.reshape(-1, size, linear.in_features).norm(dim=(1, 2))
                for linear in family.projections(layer)
            )
        out = family.linear(layer, family.attn_out).weight
        scores = scores + out.reshape(out.shape[0], -1, size).norm(dim=(0, 2))
    return scores


def ffn_importance(layer: nn.Module, family: EncoderFamily | None = None) -> torch.Tensor:
    """Per-neuron L2 importance: FFN input row norm (both rows of a gated pair) + FFN output column norm."""
    family = family or _layer_family(layer)
    with torch.no_grad():
        rows = family.linear(layer, family.ffn_in).weight.norm(dim=1)
        if family.gated:
            rows = rows[: rows.shape[0] // 2] + rows[rows.shape[0] // 2 :]
        return rows + family.linear(layer, family.ffn_out).weight.norm(dim=0)


def layer_drop_indices(n: int, keep: int) -> list[int]:
    """Evenly spaced positions of `keep` of `n` layers, ending at the last: ((i + 1) · n) // keep − 1.

    6 → 3 keeps [1, 3, 5] (DistilBERT-style alternate layers); 12 → 4 keeps [2, 5, 8, 11];
    keep 1 keeps only the last layer, whose output the head was trained on.
    """
    return [((i + 1) * n) // keep - 1 for i in range(keep)]


# --- handlers ---------------------------------------------------------------------------------


def _record(technique: str, config: TechniqueConfig, params_before: int, model: nn.Module, **extra: Any) -> StepRecord:
    details = {"params_before": params_before, "params_after": _n_params(model), **extra, "structure": structure_of(model)}
    return StepRecord.of(config, technique, details=details)


def prune_heads(model: nn.Module, config: HeadPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Remove the least important attention heads, the same number in every layer."""
    model = model.cpu().eval()
    _, layers, family = _find_encoder(model)
    params_before = _n_params(model)
    for layer in layers:
        current = _kept_heads(layer, family)
        n_remove = round(config.ratio * len(current))
        if n_remove >= len(current):
            limit = (len(current) - 0.5) / len(current)
            raise ValueError(
                f"prune_heads_ratio: {config.ratio} would remove all {len(current)} attention heads of a layer "
                f"(round({config.ratio} × {len(current)}) = {n_remove}); expected a ratio below {limit:.4g} "
                "so that at least one head per layer stays"
            )
    removed = _remove_least_important(layers, config.ratio, family, _kept_heads, head_importance, _keep_heads)
    return model, _record("heads", config, params_before, model, heads_removed_per_layer=removed)


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
    return model, _record("layers", config, params_before, model, layers_before=n)


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
        if shaped and (knob in shown or int(knobs[kept]) != int(knobs[total])):
            n, of = int(knobs[kept]), int(knobs[total])
            parts.append(f"{n} of {of} layers" if what == "layers" else f"{what} {n} of {of}")
        elif knob == "keep_layers" and knob in knobs:
            parts.append(f"{int(knobs[knob])} layers")
        elif knob in knobs and knob != "keep_layers" and float(knobs[knob] or 0) > 0:
            parts.append(f"{what} −{float(knobs[knob]) * 100:.0f}%")
    return parts


def _seeds(space: Mapping[str, Any], teacher_layers: int | None) -> list[dict[str, Any]]:
    """One layer fewer than the teacher, then the smallest FFN and head ratios, each alone."""
    seeds: list[dict[str, Any]] = []
    if teacher_layers:
        fewer = [k for k in candidate_values(space.get("keep_layers")) if isinstance(k, int) and k < teacher_layers]
        if fewer:
            seeds.append({"keep_layers": max(fewer)})
    for name in ("prune_ffn_ratio", "prune_heads_ratio"):
        ratio = mildest_ratio(space.get(name))
        if ratio is not None:
            seeds.append({name: ratio})
    return seeds


TECHNIQUE = Technique(
    name="transformer_prune",
    knobs=(
        Knob("prune_heads_ratio", float, 0.0, "transformers: share of attention heads removed per layer",
             {"ge": 0.0, "le": MAX_PRUNE_RATIO}),
        Knob("prune_ffn_ratio", float, 0.0, "transformers: share of FFN neurons removed per layer",
             {"ge": 0.0, "le": MAX_PRUNE_RATIO}),
        Knob("keep_layers", int | None, None, "transformers: encoder layers kept, evenly spread (None: all)", {"ge": 1}),
    ),  # fmt: skip
    sampled_as=("keep_layers", "prune_heads_ratio", "prune_ffn_ratio"),
    stages=_stages,
    describe=_describe,
    seeds=_seeds,
    handlers={HeadPruneConfig: prune_heads, FFNPruneConfig: prune_ffn, LayerDropConfig: drop_layers},
    stage_order=10,
    sample_order=20,
    seed_order=20,
)
