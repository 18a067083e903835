"""summary.json's recommendation: cheapest within the bound on val and test; savings need a priced baseline."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.report.pareto import mark_pareto
from orchestrator.report.results import trials_frame
from orchestrator.report.summary import build_summary, recommend


def summary_json(*args, **kwargs) -> dict:
    """The summary as summary.json holds it."""
    return build_summary(*args, **kwargs).model_dump(mode="json")

COST = {"usd": 0.5, "cpu_hours": 1.0, "gpu_hours": 0.0}
INPUTS = {"traffic": {"days_per_month": 730 / 24}}


def _row(tid, quality, monthly, feasible=True, baseline=False):
    return {"trial_id": tid, "status": "finished", "baseline": baseline, "quality": quality, "quality_drop": 0.99 - quality,
            "monthly_usd": monthly, "runtime": "eager", "feasible": feasible, "size_bytes": 1000,
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


def test_the_held_out_check_takes_the_upper_end_of_the_paired_interval_where_there_is_one():
    frame = _frame([_row("base", 0.99, 1000.0, baseline=True), _row("a", 0.986, 100.0), _row("b", 0.984, 200.0)])
    # a: point drop 0.004 within the 0.01 bound, but its paired interval reaches 0.013: not sure enough.
    # b: point drop 0.006 with the interval's upper end at 0.009: the whole interval is within the bound.
    results = {"a": {"value": 0.496, "drop": 0.004, "drop_ci95_low": -0.005, "drop_ci95_high": 0.013},
               "b": {"value": 0.494, "drop": 0.006, "drop_ci95_low": 0.003, "drop_ci95_high": 0.009}}  # fmt: skip
    rec, passed = recommend(frame, 0.01, baseline_test=0.50, test_quality=lambda r: results[r["trial_id"]])
    assert rec["trial_id"] == "b"
    assert [p["trial_id"] for p in passed] == ["a"] and "paired 95% CI up to 0.0130" in passed[0]["reason"]
    # Without an interval (a task that reports only totals) the point drop decides, as before.
    results["a"] = {"value": 0.496, "drop": 0.004, "drop_ci95_low": None, "drop_ci95_high": None}
    rec, passed = recommend(frame, 0.01, baseline_test=0.50, test_quality=lambda r: results[r["trial_id"]])
    assert rec["trial_id"] == "a" and passed == []


def test_savings_need_a_feasible_baseline_and_the_keys_are_always_there():
    frame = _frame([_row("base", 0.99, None, feasible=False, baseline=True), _row("a", 0.985, 100.0)])
    rec = frame[frame["trial_id"] == "a"].iloc[0]
    tests = {"base": {"value": 0.99}, "a": {"value": 0.985, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360}}
    summary = summary_json(frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec,
                            passed_over=[], test_results=tests, cost=dict(COST), inputs=INPUTS)  # fmt: skip
    assert summary["recommended"]["savings_usd"] is None and summary["recommended"]["savings_ratio"] is None
    assert "payback_days" not in summary["search_cost"]


def test_savings_and_payback_are_recomputable():
    frame = _frame([_row("base", 0.99, 1000.0, baseline=True), _row("a", 0.985, 250.0)])
    rec = frame[frame["trial_id"] == "a"].iloc[0]
    tests = {"base": {"value": 0.99}, "a": {"value": 0.985, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360}}
    summary = summary_json(frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec,
                            passed_over=[], test_results=tests, cost=dict(COST), inputs=INPUTS)  # fmt: skip
    assert summary["recommended"]["savings_usd"] == 750.0
    assert summary["recommended"]["savings_ratio"] == 0.75
    assert summary["search_cost"]["payback_days"] == pytest.approx(0.5 / (750.0 / (730 / 24)), abs=1e-4)
    assert summary["n_trials"] == 2 and [p["trial_id"] for p in summary["pareto"]] == ["a", "base"]


# ---- recommendations a person would agree with -----------------------------------------------------------


def _summary(frame, rec, tests, traffic=None, max_drop=0.01):
    inputs = {"traffic": {"days_per_month": 730 / 24, **(traffic or {})}}
    return summary_json(frame, run_id="r", task="digits", metric="accuracy", max_drop=max_drop, recommended=rec,
                         passed_over=[], test_results=tests, cost=dict(COST), inputs=inputs)  # fmt: skip


def _tests(frame):
    return {t: {"value": 0.99, "ci95_low": 0.98, "ci95_high": 1.0, "n_examples": 360} for t in frame["trial_id"]}


@pytest.mark.parametrize("compressed_usd", [130.31, 200.0])
def test_a_compressed_candidate_that_costs_no_less_than_the_baseline_keeps_the_baseline(compressed_usd):
    frame = _frame([_row("base", 0.99, 130.31, baseline=True), _row("a", 0.985, compressed_usd)])
    tests = _tests(frame)
    rec, _ = recommend(frame, 0.01, baseline_test=0.99, test_quality=lambda r: tests[r["trial_id"]])
    assert rec["trial_id"] == "base"
    summary = _summary(frame, rec, tests)
    assert summary["keep_baseline"] is True and summary["recommended"]["savings_usd"] == 0.0
    assert "keep the uncompressed model" in summary["recommendation_note"]
    assert "compression saves nothing at this traffic" in summary["recommendation_note"]


def test_keeping_the_baseline_because_nothing_compressed_held_quality_says_so():
    frame = _frame([_row("base", 0.99, 1898.73, baseline=True), _row("a", 0.60, 651.53), _row("b", 0.40, 500.0)])
    tests = _tests(frame)
    rec, _ = recommend(frame, 0.15, baseline_test=0.99, test_quality=lambda r: tests[r["trial_id"]])
    assert rec["trial_id"] == "base"
    note = _summary(frame, rec, tests, max_drop=0.15)["recommendation_note"]
    assert "no compressed candidate stayed within the quality bound (0.15)" in note
    assert "the closest, trial a, lost 0.3900 at $651.53/month" in note and "saves nothing" not in note


def test_a_cheaper_compressed_candidate_is_still_recommended():
    frame = _frame([_row("base", 0.99, 130.31, baseline=True), _row("a", 0.985, 65.16)])
    tests = _tests(frame)
    rec, _ = recommend(frame, 0.01, baseline_test=0.99, test_quality=lambda r: tests[r["trial_id"]])
    assert rec["trial_id"] == "a" and _summary(frame, rec, tests)["keep_baseline"] is False


def test_ties_on_dollars_go_to_quality_then_headroom_then_size_then_trial_id():
    def row(tid, quality, fleet_sps, size):
        return {**_row(tid, quality, 65.16), "replicas": 1, "instance_throughput_sps": fleet_sps, "size_bytes": size}

    base = _row("base", 0.99, 1000.0, baseline=True)
    cases = [
        ([row("z", 0.988, 100.0, 10), row("a", 0.985, 900.0, 1)], "z"),  # better quality wins over everything after it
        ([row("z", 0.985, 900.0, 10), row("a", 0.985, 100.0, 1)], "z"),  # then more throughput headroom
        ([row("z", 0.985, 100.0, 1), row("a", 0.985, 100.0, 10)], "z"),  # then the smaller model
        ([row("z", 0.985, 100.0, 1), row("a", 0.985, 100.0, 1)], "a"),  # and only then the trial id
    ]
    for rows, expected in cases:
        frame = _frame([base, *rows])
        tests = _tests(frame)
        rec, _ = recommend(frame, 0.01, baseline_test=0.99, test_quality=lambda r: tests[r["trial_id"]])
        assert rec["trial_id"] == expected, rows


def test_every_candidate_at_the_replica_floor_says_so_and_when_compression_starts_to_pay():
    def row(tid, quality, usd, baseline=False):
        return {**_row(tid, quality, usd, baseline=baseline), "replicas": 2, "instance_type": "c7i.large",
                "instance_throughput_sps": 3000.0 if baseline else 12_000.0}  # fmt: skip

    frame = _frame([row("base", 0.99, 130.31, baseline=True), row("a", 0.985, 130.31)])
    tests = _tests(frame)
    rec, _ = recommend(frame, 0.01, baseline_test=0.99, test_quality=lambda r: tests[r["trial_id"]])
    assert rec["trial_id"] == "base"  # the baseline is already at the floor: it is what to serve
    summary = _summary(frame, rec, tests, traffic={"min_replicas": 2, "target_utilization": 0.6})
    floor = summary["replica_floor"]
    assert floor["pays_above_rps"] == 2 * 3000.0 * 0.6  # 3,600 requests/s: above it the baseline needs a third instance
    assert "sits at min_replicas 2" in summary["recommendation_note"]
    assert "compression starts to pay only above about 3,600 requests/s" in summary["recommendation_note"]


def test_the_keep_reason_names_the_candidate_weighed_not_a_cheaper_one_that_failed_the_test():
    frame = _frame([_row("base", 0.99, 150.0, baseline=True), _row("a", 0.985, 50.0), _row("b", 0.984, 200.0)])
    tests = {**_tests(frame), "a": {"value": 0.95, "ci95_low": 0.9, "ci95_high": 1.0, "n_examples": 360}}
    rec, passed = recommend(frame, 0.01, baseline_test=0.99, test_quality=lambda r: tests[r["trial_id"]])
    assert rec["trial_id"] == "base" and [p["trial_id"] for p in passed] == ["a"]
    summary = summary_json(frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec,
                            passed_over=passed, test_results=tests, cost=dict(COST), inputs=INPUTS)  # fmt: skip
    assert "(trial b) costs $200.00/month, no less" in summary["keep_baseline_reason"]
    assert summary["recommendation_note"].endswith(summary["keep_baseline_reason"])


def test_a_table_from_before_quality_drop_reads_its_accuracy_drop_and_keeps_the_aliases():
    from orchestrator.report import upgrade

    old = upgrade.trials(pd.DataFrame({"trial_id": ["a", "b"], "accuracy_drop": [0.01, None]}))
    assert old["quality_drop"].tolist()[0] == 0.01 and old["accuracy_drop"].tolist()[0] == 0.01
    mixed = upgrade.trials(pd.DataFrame({"trial_id": ["a", "b"], "quality_drop": [0.2, 0.0], "accuracy_drop": [None, 0.0]}))
    assert mixed["quality_drop"].tolist() == [0.2, 0.0] and mixed["accuracy_drop"].tolist() == [0.2, 0.0]
