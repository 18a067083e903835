"""summary.json's recommendation: cheapest within the bound on val and test; savings need a priced baseline."""

from __future__ import annotations

import pytest

from orchestrator.report.pareto import mark_pareto
from orchestrator.report.results import trials_frame
from orchestrator.report.summary import build_summary, recommend

COST = {"usd": 0.5, "cpu_hours": 1.0, "gpu_hours": 0.0}
INPUTS = {"traffic": {"days_per_month": 730 / 24}}


def _row(tid, quality, monthly, feasible=True, baseline=False):
    return {"trial_id": tid, "status": "finished", "baseline": baseline, "quality": quality, "accuracy": quality,
            "accuracy_drop": 0.99 - quality, "monthly_usd": monthly, "feasible": feasible, "size_bytes": 1000,
            "throughput_sps": 100.0, "quality_ci95_low": quality - 0.01, "quality_ci95_high": quality + 0.01}  # fmt: skip


def _frame(rows):
    frame = trials_frame(rows)
    frame["pareto"] = mark_pareto(frame)
    return frame


def _test(values):
    return lambda row: {"value": values[row["trial_id"]], "ci95_low": 0.9, "ci95_high": 1.0, "n_examples": 360}


def test_candidate_failing_the_test_check_is_passed_over_for_the_next_cheapest():
    frame = _frame([_row("base", 0.99, 1000.0, baseline=True), _row("a", 0.985, 100.0), _row("b", 0.983, 200.0)])
    rec, passed = recommend(frame, 0.01, baseline_test=0.99, test_quality=_test({"a": 0.95, "b": 0.985}))
    assert rec["trial_id"] == "b"
    assert [p["trial_id"] for p in passed] == ["a"] and "test drop" in passed[0]["reason"]


def test_savings_need_a_feasible_baseline_and_the_keys_are_always_there():
    frame = _frame([_row("base", 0.99, None, feasible=False, baseline=True), _row("a", 0.985, 100.0)])
    rec = frame[frame["trial_id"] == "a"].iloc[0]
    tests = {"base": {"value": 0.99}, "a": {"value": 0.985, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360}}
    summary = build_summary(frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec,
                            passed_over=[], test_results=tests, cost=dict(COST), inputs=INPUTS)  # fmt: skip
    assert summary["recommended"]["savings_usd"] is None and summary["recommended"]["savings_ratio"] is None
    assert "payback_days" not in summary["search_cost"]


def test_savings_and_payback_are_recomputable():
    frame = _frame([_row("base", 0.99, 1000.0, baseline=True), _row("a", 0.985, 250.0)])
    rec = frame[frame["trial_id"] == "a"].iloc[0]
    tests = {"base": {"value": 0.99}, "a": {"value": 0.985, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360}}
    summary = build_summary(frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec,
                            passed_over=[], test_results=tests, cost=dict(COST), inputs=INPUTS)  # fmt: skip
    assert summary["recommended"]["savings_usd"] == 750.0
    assert summary["recommended"]["savings_ratio"] == 0.75
    assert summary["search_cost"]["payback_days"] == pytest.approx(0.5 / (750.0 / (730 / 24)), abs=1e-4)
    assert summary["n_trials"] == 2 and [p["trial_id"] for p in summary["pareto"]] == ["a", "base"]
