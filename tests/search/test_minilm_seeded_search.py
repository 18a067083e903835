"""A real 6-trial MiniLM search at its CI size: the teacher first, then int8 alone on each runtime of the space."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from orchestrator.search.runner import start_search
from tests.search.conftest import minilm_ci_config

pytestmark = pytest.mark.slow


def test_a_seeded_minilm_search_tries_the_teacher_then_int8_alone_on_every_runtime(tmp_path, minilm_task):
    run = start_search(minilm_ci_config(tmp_path, trials=6, max_concurrent=1, seed_candidates=None), out=tmp_path / "runs")  # the default: auto

    frame = pd.read_csv(run / "trials.csv").sort_values("trial_number").reset_index(drop=True)
    assert frame["trial_number"].tolist() == list(range(6))
    assert (frame["status"] == "finished").all(), frame["error"].dropna().tolist()
    # 6 // 3 = 2 seeds, and int8 alone on each runtime comes before any pruning knob: eager, then ONNX Runtime.
    head = frame.head(3).assign(keep_layers=frame["keep_layers"].fillna(6))  # none kept = all six layers (the teacher)
    first = [tuple(r) for r in head[["bits", "runtime", "keep_layers", "prune_ffn_ratio", "kd_steps"]].to_numpy().tolist()]
    assert first == [(32, "eager", 6, 0.0, 0), (8, "eager", 6, 0.0, 0), (8, "onnxruntime", 6, 0.0, 0)]
    assert frame["baseline"].astype(bool).tolist() == [True] + [False] * 5
    assert frame["seeded"].astype(bool).tolist() == [False, True, True, False, False, False]
    study = optuna.load_study(study_name=run.name, storage=f"sqlite:///{run / 'optuna.db'}")
    assert [t.number for t in study.get_trials() if "fixed_params" in t.system_attrs] == [0, 1, 2]
