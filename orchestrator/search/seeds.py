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

from orchestrator.search.space import BASELINE, DefineByRun, choice_param
from orchestrator.techniques import TECHNIQUES
from orchestrator.techniques.domains import Choices, Domain, Range


def single_technique_candidates(space: dict[str, Domain], teacher_layers: int | None = None) -> list[dict[str, Any]]:
    """Every single-technique candidate the space allows, in the order they are tried; knob values as a Recipe takes them.

    Each technique declares its own (`Technique.seeds`), and `seed_order` puts the cheapest to try first."""
    ordered = sorted(TECHNIQUES, key=lambda t: t.seed_order)
    return [{**BASELINE, **candidate} for technique in ordered for candidate in technique.seeds(space, teacher_layers)]


def seed_candidates(space: dict[str, Domain], trials: int, teacher_layers: int | None = None) -> list[dict[str, Any]]:
    """The candidates enqueued after the teacher: the first of `single_technique_candidates`, at most a third of `trials`."""
    return single_technique_candidates(space, teacher_layers)[: trials // 3]


def seed_point(space: dict[str, Domain], candidate: dict[str, Any], teacher_layers: int | None = None) -> dict[str, Any]:
    """The Optuna parameters (as `points_to_evaluate` takes them) of a candidate's knobs that the space can express."""
    point: dict[str, Any] = {}
    for name, domain in space.items():
        if name not in candidate:
            continue
        value = candidate[name]
        if name == "keep_layers" and value is None:
            value = teacher_layers
        if isinstance(domain, Choices):
            param, options, values = choice_param(name, domain)
            if value in values:
                point[param] = options[values.index(value)]
        elif isinstance(domain, Range) and isinstance(value, (int, float)) and domain.low <= value <= domain.high:
            point[name] = value
    return point


def seed_points(space: dict[str, Domain], trials: int, teacher_layers: int | None = None) -> list[dict[str, Any]]:
    """`seed_candidates` as enqueued points, in order."""
    return [seed_point(space, c, teacher_layers) for c in seed_candidates(space, trials, teacher_layers)]


class SeededSpace(DefineByRun):
    """The define-by-run space, marking trials 1..n_seeds (the enqueued seeds) as seeded and numbering every trial.

    `trial_number` is the study's trial number, the order the searcher proposed trials in (Ray Tune's trial ids
    are random), so trials.csv shows which came first.
    """

    def __init__(self, space: dict[str, Domain], n_seeds: int) -> None:
        super().__init__(space)
        self.n_seeds = n_seeds

    def __call__(self, trial: Any) -> dict[str, Any]:
        fixed = super().__call__(trial)
        fixed["seeded"] = 1 <= trial.number <= self.n_seeds
        fixed["trial_number"] = trial.number
        return fixed
