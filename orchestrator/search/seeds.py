"""The obvious candidates, tried right after the teacher: each technique alone, at its mildest setting.

A sampler given a dozen trials over a space of thousands of combinations cannot be expected to try int8 alone,
the one candidate that often holds quality at no training cost. So the search enqueues (OptunaSearch's
`points_to_evaluate`, as it does the teacher) the single-technique candidates its space allows:

1. each quantized bit width alone (8, 16, 4 bits), on each serving runtime the space holds for it;
2. each pruning knob alone at its mildest non-zero value: keep one layer fewer, the smallest FFN and head ratios,
   the smallest ratio of each unstructured or structured method.

Each is otherwise the teacher (no distillation). They count in the trial budget, at most a third of it; within
each group the cheapest to build come first (eager before ONNX Runtime before torch.compile), and quantization
comes before pruning, since it needs no training to hold quality and is what a user tries first by hand.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import Choices, Knob, Range
from orchestrator.runtimes import REGISTRY
from orchestrator.search.space import BASELINE

RUNTIME_BUILD_ORDER = ("eager", "onnxruntime", "openvino", "compiled")  # cheapest to build first


def _values(knob: Knob | None) -> list[Any]:
    """Every value a knob can take that a seed may use: its choices, a range's low end, or the fixed value."""
    if knob is None:
        return []
    if isinstance(knob, Choices):
        return list(knob.choices)
    if isinstance(knob, Range):
        return [knob.low]
    return [knob]


def _mildest(knob: Knob | None) -> float | None:
    """The smallest non-zero ratio a knob allows, or None."""
    ratios = [v for v in _values(knob) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0]
    return min(ratios) if ratios else None


def _runtimes(space: dict[str, Knob], bits: int) -> list[str]:
    """The runtimes of the space that serve `bits`, cheapest to build first."""
    serving = REGISTRY.serving(bits)
    named = [r for r in _values(space.get("runtime")) or [serving[0]] if r in serving] or serving[:1]
    return sorted(named, key=lambda r: RUNTIME_BUILD_ORDER.index(r) if r in RUNTIME_BUILD_ORDER else len(RUNTIME_BUILD_ORDER))


def single_technique_candidates(space: dict[str, Knob], teacher_layers: int | None = None) -> list[dict[str, Any]]:
    """Every single-technique candidate the space allows, in the order they are tried; knob values as a Recipe takes them."""
    candidates: list[dict[str, Any]] = []
    for bits in sorted((b for b in _values(space.get("bits")) if b != 32), reverse=True):
        candidates += [{"bits": bits, "runtime": runtime} for runtime in _runtimes(space, bits)]
    if teacher_layers:
        fewer = [k for k in _values(space.get("keep_layers")) if isinstance(k, int) and k < teacher_layers]
        if fewer:
            candidates.append({"keep_layers": max(fewer)})
    for name in ("prune_ffn_ratio", "prune_heads_ratio"):
        ratio = _mildest(space.get(name))
        if ratio is not None:
            candidates.append({name: ratio})
    for method in ("structured", "unstructured"):
        ratio = _mildest(space.get("prune_ratio"))
        if method in _values(space.get("prune_method")) and ratio is not None:
            candidates.append({"prune_method": method, "prune_ratio": ratio})
    return [{**BASELINE, **c} for c in candidates]


def seed_candidates(space: dict[str, Knob], trials: int, teacher_layers: int | None = None) -> list[dict[str, Any]]:
    """The candidates enqueued after the teacher: the first of `single_technique_candidates`, at most a third of `trials`."""
    return single_technique_candidates(space, teacher_layers)[: trials // 3]
