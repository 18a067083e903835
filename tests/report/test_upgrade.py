"""A run folder written before labeled retrieval, whose `recall_at_10` was agreement with the teacher, still reports."""

from __future__ import annotations

import json

import pandas as pd
import yaml

from orchestrator.report.build import build_report
from orchestrator.report.rundata import load_run
from orchestrator.report.upgrade import metric_as_recorded
from tests.report._fake import make_run


def _as_text_run(root, metric: str, new_columns: bool):
    """Rename the fake run's metric as a text run of either era wrote it."""
    trials = pd.read_csv(root / "trials.csv")
    trials["quality_metric"] = metric
    if new_columns:
        trials["agreement_at_10"] = 0.9  # a labeled run records agreement beside its metric
    else:
        trials = trials.drop(columns=[c for c in ("agreement_at_10", "fidelity") if c in trials])
    trials.to_csv(root / "trials.csv", index=False)
    summary = json.loads((root / "summary.json").read_text())
    summary["quality_metric"] = metric
    (root / "summary.json").write_text(json.dumps(summary))
    config = yaml.safe_load((root / "config.yaml").read_text())
    config.setdefault("objective", {})["metric"] = metric
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def test_an_old_text_run_reports_its_recall_at_10_as_agreement(tmp_path):
    root = _as_text_run(make_run(tmp_path), "recall_at_10", new_columns=False)
    run = load_run(root)
    assert run.metric == "agreement_at_10" and set(run.trials["quality_metric"].dropna()) == {"agreement_at_10"}
    report = build_report(root)["markdown"].read_text()
    assert "agreement\\_at\\_10" in report or "agreement_at_10" in report


def test_a_labeled_run_keeps_recall_at_10(tmp_path):
    root = _as_text_run(make_run(tmp_path), "recall_at_10", new_columns=True)
    assert load_run(root).metric == "recall_at_10"


def test_other_metrics_are_never_renamed():
    assert metric_as_recorded("accuracy", []) == "accuracy"
    assert metric_as_recorded("ndcg_at_10", []) == "ndcg_at_10"
    assert metric_as_recorded("recall_at_10", ["agreement_at_10"]) == "recall_at_10"
