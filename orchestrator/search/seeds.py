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

How they reach the study: OptunaSearch gives each point of `points_to_evaluate` to `study.enqueue_trial`, which
stores it as the trial's fixed parameters; the define-by-run space's `suggest_*` calls return a fixed value where
one is given and sample the rest, so a point may name conditional knobs (prune_ratio, runtime) and a knob the
trial never reaches is simply unused. Enqueued trials take the study's next numbers: the teacher 0, the seeds
1..n, which is how `SeededSpace` marks them. A point holds the teacher's value of every knob the space can
express it in; a knob whose domain lacks it (kd_steps without 0, say) is left to the sampler.
"""

from __future__ import annotations

from typing import Any

from orchestrator.config import Choices, Knob, Range
from orchestrator.runtimes import REGISTRY
from orchestrator.search.space import BASELINE, DefineByRun, choice_param

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


def seed_point(space: dict[str, Knob], candidate: dict[str, Any], teacher_layers: int | None = None) -> dict[str, Any]:
    """The Optuna parameters (as `points_to_evaluate` takes them) of a candidate's knobs that the space can express."""
    point: dict[str, Any] = {}
    for name, knob in space.items():
        if name not in candidate:
            continue
        value = candidate[name]
        if name == "keep_layers" and value is None:
            value = teacher_layers
        if isinstance(knob, Choices):
            param, options, values = choice_param(name, knob)
            if value in values:
                point[param] = options[values.index(value)]
        elif isinstance(knob, Range) and isinstance(value, (int, float)) and knob.low <= value <= knob.high:
            point[name] = value
    return point


def seed_points(space: dict[str, Knob], trials: int, teacher_layers: int | None = None) -> list[dict[str, Any]]:
    """`seed_candidates` as enqueued points, in order."""
    return [seed_point(space, c, teacher_layers) for c in seed_candidates(space, trials, teacher_layers)]


class SeededSpace(DefineByRun):
    """The define-by-run space, marking trials 1..n_seeds (the enqueued seeds) as seeded and numbering every trial.

    `trial_number` is the study's trial number, the order the searcher proposed trials in (Ray Tune's trial ids
    are random), so trials.csv shows which came first.
    """

    def __init__(self, space: dict[str, Knob], n_seeds: int) -> None:
        super().__init__(space)
        self.n_seeds = n_seeds

    def __call__(self, trial: Any) -> dict[str, Any]:
        fixed = super().__call__(trial)
        fixed["seeded"] = 1 <= trial.number <= self.n_seeds
        fixed["trial_number"] = trial.number
        return fixed
