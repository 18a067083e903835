"""ConstrainedOptunaSearch: constraints reach the study, early-stopped trials are PRUNED, stale trials FAIL.

These exercise OptunaSearch's private `_ot_trials` that the subclass relies on,
so a Ray upgrade that changes it fails here first.
"""

from __future__ import annotations

import optuna

from orchestrator.config import Choices, SearchSettings
from orchestrator.search.searcher import ConstrainedOptunaSearch, fail_stale_trials, make_searcher

SPACE = {"bits": Choices(choices=[32, 8]), "prune_method": Choices(choices=["none", "structured"])}


def _searcher(tmp_path, sampler="tpe"):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return make_searcher(SPACE, SearchSettings(trials=8, sampler=sampler, seed=0), url, "s"), url


def _final(quality, cost, drop_over, feasible=True):
    return {"final": True, "quality": quality, "objective_monthly_usd": cost,
            "constraint_quality": drop_over, "constraint_cost": 0.0 if feasible else 1.0}  # fmt: skip


def test_constraints_reach_the_study_and_infeasible_trials_leave_the_front(tmp_path):
    searcher, url = _searcher(tmp_path)
    assert isinstance(searcher, ConstrainedOptunaSearch)
    for i in range(3):
        assert searcher.suggest(f"t{i}") is not None
    searcher.on_trial_complete("t0", _final(0.99, 500.0, -0.01))
    searcher.on_trial_complete("t1", _final(0.99, 100.0, 0.05))  # cheaper but breaks the quality bound
    searcher.on_trial_complete("t2", _final(0.99, 200.0, -0.005))
    study = optuna.load_study(study_name="s", storage=url)
    trials = study.get_trials()
    assert trials[1].constraints == {"constraint_quality": 0.05, "constraint_cost": 0.0}
    front = {tuple(t.values) for t in study.best_trials}
    assert (0.99, 100.0) not in front and (0.99, 200.0) in front


def test_early_stopped_trial_is_pruned_not_complete(tmp_path):
    searcher, url = _searcher(tmp_path)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", {"final": False, "quality": 0.4, "objective_monthly_usd": 1e9})
    (trial,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert trial.state == optuna.trial.TrialState.PRUNED and trial.values is None


def test_failed_trial_is_fail(tmp_path):
    searcher, url = _searcher(tmp_path, sampler="random")
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", None, error=True)
    (trial,) = optuna.load_study(study_name="s", storage=url).get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL


def test_stale_running_trials_are_failed(tmp_path):
    searcher, url = _searcher(tmp_path, sampler="nsga2")
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.on_trial_complete("t0", _final(0.9, 10.0, -0.01))
    assert fail_stale_trials(url, "s") == 1
    states = [t.state for t in optuna.load_study(study_name="s", storage=url).get_trials()]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL]


def test_every_sampler_builds(tmp_path):
    for name in ("tpe", "nsga2", "gp", "random", "grid"):
        (tmp_path / name).mkdir()
        searcher, _ = _searcher(tmp_path / name, sampler=name)
        assert searcher.suggest("t0") is not None and searcher.suggest("t1") is not None
