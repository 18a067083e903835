"""Real digits searches: the first trials are the teacher then each technique alone; `seed_candidates: none` seeds none."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from orchestrator.cli import main

pytestmark = pytest.mark.slow


def _trials(run_dir) -> pd.DataFrame:
    """trials.csv in the order the searcher proposed the trials (the study's trial numbers)."""
    return pd.read_csv(run_dir / "trials.csv").sort_values("trial_number").reset_index(drop=True)


def test_the_fast_search_tries_the_teacher_then_int8_alone_then_structured_pruning_at_its_lowest_ratio(fast_search_run):
    # FAST: 8 trials over prune_method {none, structured, 2:4} x prune_ratio [0.3, 0.7] x bits {32, 8} x kd_steps {0, 20};
    # 8 // 3 = 2 seeds: int8 alone (eager, the only runtime), then the first pruning method alone at the lowest ratio.
    run_dir = fast_search_run.path
    frame = _trials(run_dir)
    assert frame["trial_number"].tolist() == list(range(8))
    first = frame.head(3)
    assert first["baseline"].astype(bool).tolist() == [True, False, False]
    assert first["seeded"].astype(bool).tolist() == [False, True, True]
    assert not frame.iloc[3:]["seeded"].astype(bool).any()
    int8, pruned = first.iloc[1], first.iloc[2]
    assert (int8["bits"], int8["prune_method"], int8["kd_steps"], int8["runtime"]) == (8, "none", 0, "eager")
    assert (pruned["bits"], pruned["prune_method"], pruned["prune_ratio"], pruned["kd_steps"]) == (32, "structured", 0.3, 0)
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    assert [t.number for t in study.get_trials() if "fixed_params" in t.system_attrs] == [0, 1, 2]  # enqueued once
    report = (run_dir / "report.md").read_text()
    assert "2 seeded" in report
    for trial_id in frame[frame["pareto"].astype(bool) & frame["seeded"].astype(bool)]["trial_id"]:
        assert f"{trial_id} (seeded)" in report or f"{trial_id} ★ (seeded)" in report


def test_seed_candidates_none_runs_only_the_teacher_then_the_sampler(write_config, tmp_path):
    config = write_config(
        search={"trials": 3, "max_concurrent": 1, "sampler": "random", "seed_candidates": "none"},
        space={"bits": {"choices": [32, 8]}, "prune_method": {"choices": ["none", "unstructured"]},
               "prune_ratio": {"low": 0.3, "high": 0.6}, "kd_steps": 0},
    )  # fmt: skip
    out = tmp_path / "runs"
    assert main(["search", str(config), "--out", str(out)]) == 0
    (run_dir,) = list(out.iterdir())
    frame = _trials(run_dir)
    assert len(frame) == 3 and not frame["seeded"].astype(bool).any()
    assert bool(frame.iloc[0]["baseline"])
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    enqueued = [t.number for t in study.get_trials() if "fixed_params" in t.system_attrs]
    assert enqueued == [0]  # the teacher alone; with auto, 3 // 3 = 1 seed (int8 alone) would be trial 1
