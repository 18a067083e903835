"""A real 6-trial MiniLM search at its CI size: the teacher first, then int8 alone on each runtime of the space."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest
import yaml

from orchestrator.search.runner import start_search
from tests.conftest import MINILM_CI, REPO

pytestmark = pytest.mark.slow


def test_a_seeded_minilm_search_tries_the_teacher_then_int8_alone_on_every_runtime(tmp_path, minilm_task):
    config = yaml.safe_load((REPO / "search_spaces" / "minilm.yaml").read_text())
    config["task"]["args"] = {**config["task"]["args"], **MINILM_CI}
    config["objective"]["max_quality_drop"] = 0.5  # the mechanics are under test, not the recommendation
    config["traffic"].update(peak_rps=500, serving_batch_size=16, latency_slo_p95_ms=10000)
    config["search"].update(trials=6, max_concurrent=1, sampler="random", scheduler="none", measure_batch_repeats=3,
                            measure_latency_repeats=5, measure_rounds=2)  # fmt: skip
    config["search"].pop("seed_candidates", None)  # the default: auto
    config["space"] = {"keep_layers": {"choices": [3, 6]}, "prune_ffn_ratio": {"choices": [0.0, 0.5]},
                       "bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 10]}, "kd_batch_size": 16,
                       "kd_learning_rate": 0.0001, "runtime": {"choices": ["eager", "onnxruntime"]}}  # fmt: skip
    path = tmp_path / "minilm.yaml"
    path.write_text(yaml.safe_dump(config))
    run = start_search(path, out=tmp_path / "runs")

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
