"""The real MiniLM through search → report → export → embed, on real Ray, at its CI size: one 6-trial search whose
first three trials are the teacher, then int8 alone on each runtime of the space (the seeds), then sampled ones."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
import torch

from orchestrator.deploy import export_trial, load
from orchestrator.search.runner import start_search
from tests.search.conftest import minilm_ci_config

pytestmark = pytest.mark.slow


def test_a_seeded_minilm_search_recommends_exports_and_embeds(tmp_path, minilm_task):
    run = start_search(minilm_ci_config(tmp_path, trials=6, seed_candidates=None), out=tmp_path / "runs")  # the default: auto

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
    assert set(frame["runtime"]) <= {"eager", "onnxruntime"} and (frame["startup_seconds"] > 0).all()
    assert set(frame["quality_metric"]) == {"ndcg_at_10"} and frame["keep_layers"].notna().sum() >= 1
    # The columns named for what they hold; accuracy and accuracy_drop are their deprecated aliases, whatever the metric.
    assert frame["accuracy"].equals(frame["quality"]) and frame["accuracy_drop"].equals(frame["quality_drop"])
    assert set(frame["diagnostic_metrics"]) == {"recall_at_10,mrr_at_10,agreement_at_10,fidelity"}
    baseline = frame[frame["baseline"]].iloc[0]
    # The teacher is measured on the labels, not assumed perfect; the drop is teacher minus candidate.
    assert 0.0 < baseline["quality"] < 1.0 and pd.isna(baseline["keep_layers"])
    assert ((frame["quality_drop"] - (baseline["quality"] - frame["quality"])).abs() < 1e-9).all()
    # Every trial's drop carries its paired interval over the same val queries, and the diagnostics sit beside it.
    assert (frame["quality_drop_ci95_low"] <= frame["quality_drop"] + 1e-12).all()
    assert (frame["quality_drop"] <= frame["quality_drop_ci95_high"] + 1e-12).all()
    assert frame[["agreement_at_10", "fidelity", "recall_at_10", "mrr_at_10"]].notna().all().all()
    assert baseline["agreement_at_10"] == 1.0 and baseline["quality_drop_ci95_high"] == 0.0
    smaller = frame[(frame["keep_layers"] == 3) | (frame["prune_ffn_ratio"] > 0)]
    assert (smaller["params"] < baseline["params"]).all()
    # Each trial records its encoder's depth and widths beside the teacher's (6 layers, 12 heads, FFN 1536).
    assert (frame[["teacher_encoder_layers", "teacher_encoder_heads_per_layer", "teacher_encoder_ffn_per_layer"]] == [6, 12, 1536]).all().all()
    assert (frame["encoder_layers"] == frame["keep_layers"].fillna(6)).all()
    assert (frame["encoder_ffn_per_layer"] == (1536 * (1 - frame["prune_ffn_ratio"].fillna(0))).round()).all()
    held_out = frame[frame["test_quality_drop"].notna()]  # the baseline and the Pareto set, checked on test
    assert baseline["trial_id"] in set(held_out["trial_id"]) and (held_out["test_quality_drop_ci95_low"].notna()).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["quality_metric"] == "ndcg_at_10"
    if summary["recommended"]:
        low, high = summary["recommended"]["test_drop_ci95"]
        assert low <= summary["recommended"]["test_drop"] <= high
    report = (run / "report.md").read_text()
    assert "ndcg\\_at\\_10" in report or "ndcg_at_10" in report
    # The report speaks the model's language: no CNN knob this search never sampled, depth as "n of 6 layers".
    assert not any(knob in report.replace("\\_", "_") for knob in ("prune_scope", "kd_temperature", "int4_group_size", "no pruning"))
    assert "of 6 layers" in report

    result = export_trial(run, dest=tmp_path / "exports")
    model = load(result.location)
    embeddings = model.embed(["where is the documentation for json?", "json encodes Python objects"])
    assert embeddings.shape == (2, 384) and torch.allclose(embeddings.norm(dim=1), torch.ones(2), atol=1e-4)
