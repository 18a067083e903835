"""ASHA on quality reported during distillation: stopped trials are PRUNED in Optuna and kept off the front."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from orchestrator.search.runner import start_search

pytestmark = pytest.mark.slow


def test_asha_stops_poor_candidates_and_optuna_sees_them_pruned(write_config, tmp_path):
    config = write_config(
        search={"trials": 8, "max_concurrent": 2, "scheduler": "asha", "eval_every_steps": 15, "sampler": "random"},
        space={"prune_method": "structured", "prune_ratio": {"low": 0.5, "high": 0.95}, "bits": 32,
               "kd_steps": 60, "kd_learning_rate": {"low": 0.00001, "high": 0.003, "log": True}},
    )  # fmt: skip
    run_dir = start_search(config, out=tmp_path / "runs")
    frame = pd.read_csv(run_dir / "trials.csv")
    assert len(frame) == 8
    stopped = frame[frame["status"] == "stopped"]
    assert len(stopped) >= 1, "ASHA stopped no trial; the intermediate reports did not reach it"
    assert stopped["error"].str.contains("stopped early").all()
    assert not stopped["pareto"].astype(bool).any()
    # Rungs judge distillation in progress: no intermediate report at its last step, where a stop saves nothing.
    reports = [json.loads(line) for f in (run_dir / "tune").glob("*/result.json") for line in f.read_text().splitlines() if line.strip()]
    steps = {r["kd_step"] for r in reports if r.get("final") is False}
    assert steps and max(steps) < 60, steps
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    pruned = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    assert len(pruned) == len(stopped)
    assert all(t not in study.best_trials for t in pruned)
