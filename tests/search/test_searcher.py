"""ConstrainedOptunaSearch: constraints reach the study, early-stopped trials are PRUNED, stale trials FAIL; seeds.

These exercise OptunaSearch's private `_ot_trials` that the subclass relies on,
so a Ray upgrade that changes it fails here first.
"""

from __future__ import annotations

import pickle

import optuna

from orchestrator.config import SearchSettings
from orchestrator.techniques.domains import Choices, Range
from orchestrator.search.searcher import ConstrainedOptunaSearch, fail_stale_trials, make_searcher
from orchestrator.search.space import BASELINE

SPACE = {"bits": Choices(choices=[32, 8]), "prune_method": Choices(choices=["none", "structured"])}


def _searcher(tmp_path, sampler="tpe", seeds="none"):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    settings = SearchSettings(trials=8, sampler=sampler, seed=0, seed_candidates=seeds)
    return make_searcher(SPACE, settings, url, "s"), url


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


MINILM_LIKE = {
    "keep_layers": Choices(choices=[3, 4, 6]), "prune_ffn_ratio": Choices(choices=[0.0, 0.25, 0.5]),
    "bits": Choices(choices=[32, 8]), "kd_steps": Choices(choices=[0, 100, 200]),
    "kd_learning_rate": Range(low=1e-4, high=1e-3, log=True), "runtime": Choices(choices=["eager", "compiled", "onnxruntime"]),
}  # fmt: skip


def _changes(config: dict) -> dict:
    """What a proposed config changes from the teacher (keep_layers None and 6 are both all six layers)."""
    teacher = {**BASELINE, "keep_layers": 6}
    config = {**config, "keep_layers": config.get("keep_layers") or 6}
    return {k: config[k] for k in teacher if k in config and config[k] != teacher[k]}


def _minilm_searcher(tmp_path, trials: int, seeds: str = "auto", sampler: str = "tpe"):
    settings = SearchSettings(trials=trials, sampler=sampler, seed=0, seed_candidates=seeds)
    return make_searcher(MINILM_LIKE, settings, f"sqlite:///{tmp_path / 'study.db'}", "s", teacher_layers=6)


def test_after_the_teacher_the_searcher_proposes_int8_alone_on_every_runtime_then_one_layer_fewer(tmp_path):
    searcher = _minilm_searcher(tmp_path, trials=12)  # 12 // 3 = 4 seeds
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert configs[0]["baseline"] and not configs[0]["seeded"]
    assert [_changes(c) for c in configs[1:5]] == [
        {"bits": 8}, {"bits": 8, "runtime": "onnxruntime"}, {"bits": 8, "runtime": "compiled"}, {"keep_layers": 4},
    ]  # fmt: skip
    assert [c["seeded"] for c in configs] == [False, True, True, True, True, False]
    assert not configs[5]["baseline"]


def test_seeds_reach_every_sampler_as_enqueued_points(tmp_path):
    for name in ("tpe", "nsga2", "gp", "random"):
        (tmp_path / name).mkdir()
        searcher = _minilm_searcher(tmp_path / name, trials=6, sampler=name)
        configs = [searcher.suggest(f"t{i}") for i in range(3)]
        assert [_changes(c) for c in configs] == [{}, {"bits": 8}, {"bits": 8, "runtime": "onnxruntime"}], name


def test_a_grid_search_is_not_seeded(tmp_path):
    searcher = make_searcher(SPACE, SearchSettings(trials=12, sampler="grid"), f"sqlite:///{tmp_path / 's.db'}", "s")
    configs = [searcher.suggest(f"t{i}") for i in range(3)]  # GridSampler refuses a partly-fixed point; none is given
    assert configs[0]["baseline"] and not any(c["seeded"] for c in configs)


def test_seed_candidates_none_enqueues_only_the_teacher(tmp_path):
    searcher = _minilm_searcher(tmp_path, trials=12, seeds="none")
    configs = [searcher.suggest(f"t{i}") for i in range(2)]
    assert configs[0]["baseline"] and not any(c["seeded"] for c in configs)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert len(study.get_trials()) == 2  # nothing left waiting


def test_a_restored_searcher_does_not_enqueue_the_seeds_again(tmp_path):
    searcher = _minilm_searcher(tmp_path, trials=12)
    searcher.suggest("t0")
    searcher.suggest("t1")
    restored = pickle.loads(pickle.dumps(searcher))  # what Tuner.restore does with the experiment's searcher
    proposed = [_changes(restored.suggest(f"t{i}")) for i in range(2, 5)]
    assert proposed == [{"bits": 8, "runtime": "onnxruntime"}, {"bits": 8, "runtime": "compiled"}, {"keep_layers": 4}]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert sum("fixed_params" in t.system_attrs for t in study.get_trials()) == 5  # the teacher and 4 seeds, once
