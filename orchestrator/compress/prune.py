"""Pruning: structured (Torch-Pruning), unstructured magnitude, and 2:4 semi-structured (CUDA).

The `prune` technique's knobs: prune_method, and where something is pruned its ratio (2:4 is always
50%), the importance of structured pruning and the scope of unstructured pruning.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import torch
import torch_pruning as tp
from pydantic import Field
from torch import nn
from torch.nn.utils import prune as torch_prune

from orchestrator.errors import UnsupportedOnDevice
from orchestrator.techniques import UNSET, Context, Knob, Knobs, Stage, StepRecord, Technique, TechniqueConfig
from orchestrator.techniques.domains import candidate_values, mildest_ratio

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
MAX_PRUNE_RATIO = 0.95  # of channels, weights, heads or neurons: a model pruned further keeps too little to judge
PruneMethod = Literal["none", "structured", "unstructured", "semi_structured_2_4"]


class StructuredPruneConfig(TechniqueConfig):
    """Remove whole conv channels and linear neurons by an L1 or L2 magnitude importance."""

    stage = Stage.PRUNE
    ratio: float = Field(ge=0.0, le=MAX_PRUNE_RATIO)
    importance: Literal["l1", "l2"] = "l2"


class UnstructuredPruneConfig(TechniqueConfig):
    """Zero the smallest-magnitude weights, globally or per layer, with no masks left behind."""

    stage = Stage.PRUNE
    ratio: float = Field(ge=0.0, le=MAX_PRUNE_RATIO)
    scope: Literal["global", "layer"] = "global"


class SemiStructured24Config(TechniqueConfig):
    """Keep the 2 largest of every 4 weights in Linear layers (50%), for sparse tensor cores."""

    stage = Stage.PRUNE


def output_layer(model: nn.Module) -> nn.Module | None:
    """The last prunable layer in module order: its outputs are the model's, so it is never pruned."""
    last = None
    for module in model.modules():
        if isinstance(module, PRUNABLE):
            last = module
    return last


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every conv and linear layer."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


def _count(model: nn.Module) -> tuple[int, int]:
    params = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return params, nonzero


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every conv/linear layer, by name: the shape a pruned model rebuilds to."""
    return {
        name: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
        for name, m in prunable_weights(model)
    }


def structured_prune(model: nn.Module, config: StructuredPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Dependency-aware channel pruning with Torch-Pruning; BatchNorm and consumers shrink too."""
    model = model.cpu().eval()
    example = ctx.task.example_batch(2)
    params_before, _ = _count(model)
    macs_before, _ = tp.utils.count_ops_and_params(model, example)
    history: list = []
    if config.ratio > 0:
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=1 if config.importance == "l1" else 2),
            pruning_ratio=config.ratio,
            ignored_layers=[output_layer(model)],
        )
        pruner.step()
        history = [[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in pruner.pruning_history()]
    params_after, _ = _count(model)
    macs_after, _ = tp.utils.count_ops_and_params(model, example)
    details = {
        "params_before": params_before,
        "params_after": params_after,
        "macs_before": int(macs_before),
        "macs_after": int(macs_after),
        "layer_widths": layer_widths(model),
        "pruning_history": history,
    }
    return model, StepRecord.of(config, "structured", details=details)


def unstructured_prune(model: nn.Module, config: UnstructuredPruneConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """L1-magnitude pruning of conv/linear weights, made permanent (prune.remove) at once."""
    model = model.cpu().eval()
    targets = [(m, "weight") for _, m in prunable_weights(model)]
    if config.ratio > 0:
        if config.scope == "global":
            torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=config.ratio)
        else:
            for module, name in targets:
                torch_prune.l1_unstructured(module, name, amount=config.ratio)
        for module, name in targets:
            torch_prune.remove(module, name)
    params, nonzero = _count(model)
    details = {
        "params": params,
        "nonzero_params": nonzero,
        "weight_sparsity": _weight_sparsity(model),
        "sparse_size_bytes": sparse_storage_bytes(model),
    }
    return model, StepRecord.of(config, "unstructured", details=details)


def _weight_sparsity(model: nn.Module) -> float:
    weights = [m.weight for _, m in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    return 1.0 - sum(int(torch.count_nonzero(w)) for w in weights) / max(total, 1)


def sparse_storage_bytes(model: nn.Module, index_bytes: int = 4) -> int:
    """Bytes to store the model with conv/linear weights in CSR form and everything else dense.

    Per weight matrix (viewed as rows = output channels): nonzero values, one
    int32 column index per nonzero, and rows + 1 int32 row pointers.
    """
    sparse_ids = {id(m.weight) for _, m in prunable_weights(model)}
    total = 0
    for tensor in list(model.parameters()) + list(model.buffers()):
        if id(tensor) in sparse_ids:
            rows = tensor.shape[0]
            nnz = int(torch.count_nonzero(tensor))
            total += nnz * (tensor.element_size() + index_bytes) + (rows + 1) * index_bytes
        else:
            total += tensor.numel() * tensor.element_size()
    return total


def two_four_mask(weight: torch.Tensor) -> torch.Tensor:
    """Boolean mask keeping the 2 largest-magnitude weights in each group of 4 along the input dim."""
    rows, cols = weight.shape
    groups = weight.detach().abs().reshape(rows, cols // 4, 4)
    keep = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, keep, True)
    return mask.reshape(rows, cols)


def semi_structured_prune(model: nn.Module, config: SemiStructured24Config, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Zero weights to the 2:4 pattern on Linear layers whose shapes sparse kernels accept (CUDA only)."""
    if ctx.device.type != "cuda":
        raise UnsupportedOnDevice(
            f"semi_structured_2_4 pruning is not supported on this device ({ctx.device.type}): "
            "it needs an NVIDIA GPU with sparse tensor cores (compute capability 8.0 or newer)"
        )
    if torch.cuda.get_device_capability(ctx.device) < (8, 0):
        raise UnsupportedOnDevice(
            f"semi_structured_2_4 pruning is not supported on this device ({torch.cuda.get_device_name(ctx.device)}): "
            "it needs compute capability 8.0 or newer"
        )
    model = model.cpu().eval()
    pruned, skipped = [], []
    for name, module in prunable_weights(model):
        if isinstance(module, nn.Linear) and _fits_2_4(module.weight):
            with torch.no_grad():
                module.weight.mul_(two_four_mask(module.weight))
            pruned.append(name)
        else:
            skipped.append(name)
    fallbacks = [f"{name}: kept dense (not a Linear layer with rows % 64 == 0 and cols % 64 == 0)" for name in skipped]
    details = {"pruned_layers": pruned, "dense_layers": skipped, "weight_sparsity": _weight_sparsity(model)}
    return model, StepRecord.of(config, "semi_structured_2_4", details=details, fallbacks=fallbacks)


def _fits_2_4(weight: torch.Tensor) -> bool:
    rows, cols = weight.shape
    return rows % 64 == 0 and cols % 64 == 0


def to_semi_structured(model: nn.Module, layer_names: list[str]) -> list[str]:
    """Swap the named Linear weights (already 2:4 zeroed, fp16/bf16, on CUDA) for sparse tensors."""
    from torch.sparse import to_sparse_semi_structured

    converted = []
    modules = dict(model.named_modules())
    for name in layer_names:
        module = _unwrap(modules, name)
        if module is None:
            continue
        module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
        converted.append(name)
    return converted


def _unwrap(modules: dict[str, nn.Module], name: str) -> nn.Module | None:
    # Half-precision models are wrapped (see quantize.CastInput): their layers gain a "model." prefix.
    return modules.get(name) or modules.get(f"model.{name}")


def _prunes(knobs: Knobs) -> bool:
    return knobs["prune_method"] != "none"


def _stages(recipe: Any) -> list[TechniqueConfig]:
    if recipe.prune_method == "structured":
        return [StructuredPruneConfig(ratio=recipe.prune_ratio, importance=recipe.prune_importance)]
    if recipe.prune_method == "unstructured":
        return [UnstructuredPruneConfig(ratio=recipe.prune_ratio, scope=recipe.prune_scope)]
    if recipe.prune_method == "semi_structured_2_4":
        return [SemiStructured24Config()]
    return []


def _describe(knobs: Knobs, shown: frozenset[str]) -> list[str]:
    """'no pruning', 'structured 50% (l2)', 'unstructured 88% (global)'."""
    method = knobs.get("prune_method")
    if method is None:
        return []
    if method == "none":
        return ["no pruning"]
    detail = knobs.get("prune_importance") if method == "structured" else knobs.get("prune_scope")
    ratio = f" {float(knobs['prune_ratio']) * 100:.0f}%" if "prune_ratio" in knobs else ""
    return [f"{method}{ratio}" + (f" ({detail})" if detail else "")]


def _seeds(space: Mapping[str, Any], teacher_layers: int | None) -> list[dict[str, Any]]:
    """Each pruning method of the space alone, at the smallest ratio the space allows."""
    ratio = mildest_ratio(space.get("prune_ratio"))
    methods = candidate_values(space.get("prune_method"))
    return [{"prune_method": m, "prune_ratio": ratio} for m in ("structured", "unstructured") if m in methods and ratio is not None]


def _check(recipe: Any) -> list[str]:
    if recipe.prune_method == "none" and recipe.prune_ratio > 0:
        return ["prune_ratio: must be 0 when prune_method is 'none'"]
    if recipe.prune_method == "semi_structured_2_4" and recipe.prune_ratio != 0.5:
        return ["prune_ratio: semi_structured_2_4 always prunes 50% (2 of every 4); set 0.5 or leave it out"]
    return []


TECHNIQUE = Technique(
    name="prune",
    knobs=(
        Knob("prune_method", PruneMethod, "none", "structured (channels, neurons), unstructured (weights) or 2:4 (CUDA)",
             in_key_when_default=True),
        Knob("prune_ratio", float, 0.0, "share of channels or weights removed", {"ge": 0.0, "le": MAX_PRUNE_RATIO},
             applies=_prunes, forced=lambda k: 0.5 if k["prune_method"] == "semi_structured_2_4" else UNSET,
             inactive=0.0, in_key_when_default=True),
        Knob("prune_importance", Literal["l1", "l2"], "l2", "structured: the magnitude that ranks channels",
             applies=lambda k: k["prune_method"] == "structured", in_key_when_default=True),
        Knob("prune_scope", Literal["global", "layer"], "global", "unstructured: rank weights over the model or per layer",
             applies=lambda k: k["prune_method"] == "unstructured", in_key_when_default=True),
    ),  # fmt: skip
    stages=_stages,
    describe=_describe,
    seeds=_seeds,
    check=_check,
    handlers={StructuredPruneConfig: structured_prune, UnstructuredPruneConfig: unstructured_prune,
              SemiStructured24Config: semi_structured_prune},  # fmt: skip
    stage_order=20,
    sample_order=10,
    seed_order=30,
)
