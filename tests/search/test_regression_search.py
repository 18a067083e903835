"""A regression task (float targets, scored by R²) searched with the distillation knobs on real Ray."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from orchestrator.search.runner import start_search

pytestmark = pytest.mark.slow


def test_no_trial_fails_because_of_the_loss_and_the_report_shows_an_interval_for_r2(tmp_path):
    config = {
        "task": {"name": "tests.tasks.regression_task:make_task"},
        "objective": {"metric": "r2", "max_quality_drop": 0.05},
        "traffic": {"peak_rps": 20000, "latency_slo_p95_ms": 5000, "serving_batch_size": 64, "min_replicas": 1},
        "deployment": {"instance_filter": ["c7i.*", "c7g.*"]},
        "search": {"trials": 4, "max_concurrent": 2, "sampler": "random", "seed": 0,
                   "measure_batch_repeats": 3, "measure_latency_repeats": 5},
        "space": {"prune_method": {"choices": ["none", "structured"]}, "prune_ratio": {"low": 0.3, "high": 0.6},
                  "bits": {"choices": [32, 8]}, "kd_steps": {"choices": [15, 30]}, "kd_alpha": {"low": 0.2, "high": 0.9}},
    }  # fmt: skip
    path = tmp_path / "regression.yaml"
    path.write_text(yaml.safe_dump(config))
    run = start_search(path, out=tmp_path / "runs")
    frame = pd.read_csv(run / "trials.csv")
    assert len(frame) == 4
    assert (frame["status"] == "finished").all(), frame.loc[frame["status"] != "finished", "error"].tolist()
    distilled = frame[frame["kd_steps"] > 0]
    assert len(distilled) >= 1 and set(frame["quality_metric"]) == {"r2"}
    assert (frame["quality_ci95_low"] <= frame["quality"]).all() and (frame["quality"] <= frame["quality_ci95_high"]).all()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["quality_metric"] == "r2"
    report = (run / "report.md").read_text()
    heldout = report.split("## Held-out check")[1].split("##")[0]
    assert heldout.count("[") >= 2, "the held-out table shows R² with its 95% interval"
    assert "r2" in report
