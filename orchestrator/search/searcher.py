"""Ray Tune's OptunaSearch, multi-objective, with the quality bound as an Optuna constraint.

Two things OptunaSearch does not do on its own (as of Ray 2.60 and Optuna 5):
pass constraints to the study (we call `Trial.set_constraint`
before the result is told), and keep trials that a scheduler stopped early out
of the Pareto front (we tell them as PRUNED, not COMPLETE with partial values).
It reads OptunaSearch's private `_ot_trials`: pinned by `ray[tune]<3` and
covered by tests/search/test_searcher.py.
"""

from __future__ import annotations

import warnings
from typing import Callable

import optuna
from ray.tune.search.optuna import OptunaSearch

from orchestrator.config import SearchSettings
from orchestrator.search.seeds import SeededSpace, seed_points
from orchestrator.search.space import baseline_point, grid_space

METRICS = ["quality", "objective_monthly_usd"]
MODES = ["max", "min"]
CONSTRAINT_KEYS = ("constraint_quality", "constraint_cost")


class ConstrainedOptunaSearch(OptunaSearch):
    """OptunaSearch that sets each trial's constraints and tells early-stopped trials as PRUNED."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if result is not None and not error and not result.get("final", False):
            return super().on_trial_complete(trial_id, None, False)  # stopped early: PRUNED
        if result is not None and ot_trial is not None and not error:
            for key in CONSTRAINT_KEYS:
                if key in result:
                    ot_trial.set_constraint(key, float(result[key]))
        return super().on_trial_complete(trial_id, result, error)


def _samplers(space: dict, settings: SearchSettings) -> dict[str, Callable[[], optuna.samplers.BaseSampler]]:
    seed = settings.seed
    startup = max(3, min(10, settings.trials // 4))
    return {
        "tpe": lambda: optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
        ),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, settings.trials // 3))),
        # GP models the knobs every trial shares; conditional knobs are sampled at random by design.
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.GridSampler(grid_space(space, settings.grid_points), seed=seed),
    }


def make_sampler(space: dict, settings: SearchSettings) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named in the settings, seeded."""
    with warnings.catch_warnings():
        # TPE's `group` (conditional knobs) is marked experimental; we use it on purpose, users need not see it.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _samplers(space, settings)[settings.sampler]()


def enqueued_points(space: dict, settings: SearchSettings, teacher_layers: int | None = None) -> list[dict]:
    """The points a new study starts with: the teacher, then the seed candidates (none where nothing is enqueued).

    The teacher is trial 0 even if the space cannot name it (an empty point: the sampler fills it)."""
    baseline = baseline_point(space)
    # GridSampler refuses an enqueued point that leaves any knob it reaches unset, and enumerates its grid anyway.
    seeding = settings.seed_candidates == "auto" and settings.sampler != "grid"
    seeds = seed_points(space, settings.trials, teacher_layers) if seeding else []
    return [baseline, *seeds] if baseline or seeds else []


def make_searcher(
    space: dict, settings: SearchSettings, storage_url: str, study_name: str, teacher_layers: int | None = None
) -> ConstrainedOptunaSearch:
    """A seeded, multi-objective (quality max, monthly $ min) searcher over a persistent study.

    The teacher, then (search.seed_candidates: auto) each technique alone (search/seeds.py), are enqueued through
    OptunaSearch's `points_to_evaluate`, so they are the study's first trials and count in its budget. Built only
    for a new study: a resumed search restores this searcher from Ray Tune's state, and nothing is enqueued again.
    """
    points = enqueued_points(space, settings, teacher_layers)
    return ConstrainedOptunaSearch(
        space=SeededSpace(space, max(0, len(points) - 1)),
        metric=METRICS,
        mode=MODES,
        points_to_evaluate=points or None,
        sampler=make_sampler(space, settings),
        study_name=study_name,
        storage=optuna.storages.RDBStorage(storage_url),
    )


def fail_stale_trials(storage_url: str, study_name: str) -> int:
    """Mark trials left RUNNING by a killed driver as FAIL; return how many."""
    study = optuna.load_study(study_name=study_name, storage=optuna.storages.RDBStorage(storage_url))
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_user_attr(t._trial_id, "reason", "driver stopped before the result was told")
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return len(stale)


