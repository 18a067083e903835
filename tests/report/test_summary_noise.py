"""The $ interval in the recommendation: a simpler candidate within measurement noise is preferred; the price on the
measured architecture is shown beside one projected across architectures."""

from __future__ import annotations

from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.candidate import CandidateMetrics
from orchestrator.cost.model import price_candidate
from orchestrator.cost.traffic import Traffic
from orchestrator.report.pareto import mark_pareto
from orchestrator.report.results import trials_frame
from orchestrator.report.summary import (
    build_summary,
    cheapest_on_measured_arch,
    recommend,
    simplicity,
    within_noise,
)

COST = {"usd": 0.5, "cpu_hours": 1.0, "gpu_hours": 0.0}
INPUTS = {"traffic": {"days_per_month": 730 / 24}}


def _row(tid, monthly, low=None, high=None, baseline=False, drop=0.005, **knobs):
    return {"trial_id": tid, "status": "finished", "baseline": baseline, "quality": 0.99 - drop, "quality_drop": drop,
            "monthly_usd": monthly, "monthly_usd_noise_low": low, "monthly_usd_noise_high": high, "runtime": "eager",
            "feasible": True, "size_bytes": 1000, "throughput_sps": 100.0, "quality_ci95_low": 0.97,
            "quality_ci95_high": 0.99, **knobs}  # fmt: skip


def _frame(rows):
    frame = trials_frame(rows)
    frame["pareto"] = mark_pareto(frame)
    return frame


def _all_hold(row):
    return {"value": 0.985, "drop": 0.005, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360}


def test_intervals_overlap_only_where_one_has_an_interval():
    assert within_noise(_row("a", 100.0, 90.0, 130.0), _row("b", 120.0, 110.0, 150.0))
    assert not within_noise(_row("a", 100.0, 90.0, 105.0), _row("b", 120.0, 110.0, 150.0))
    assert within_noise(_row("a", 100.0, 90.0, 125.0), _row("b", 120.0))  # b's point lies in a's interval
    assert not within_noise(_row("a", 100.0), _row("b", 100.0))  # two bare points: ranked as before


def test_fewer_stages_and_a_cheaper_runtime_are_simpler():
    assert simplicity(_row("t", 1.0)) < simplicity(_row("q", 1.0, bits=8)) < simplicity(_row("o", 1.0, bits=8, prune_method="l1_unstructured", prune_ratio=0.5))
    assert simplicity(_row("e", 1.0, bits=8)) < simplicity(_row("c", 1.0, bits=8, runtime="compiled"))


def test_a_simpler_candidate_within_noise_is_recommended_and_the_note_says_why():
    rows = [
        _row("base", 1000.0, baseline=True),
        _row("pruned", 100.0, 80.0, 140.0, bits=8, prune_method="l1_unstructured", prune_ratio=0.5),
        _row("int8", 120.0, 95.0, 160.0, drop=0.002, bits=8),  # one stage, on the front; overlaps the cheapest
    ]
    frame = _frame(rows)
    rec, passed = recommend(frame, 0.01, baseline_test=0.99, test_quality=_all_hold)
    assert rec["trial_id"] == "int8"
    assert passed[0]["trial_id"] == "pruned" and passed[0]["noise_tie"] and passed[0]["preferred"] == "int8"
    assert "within measurement noise of trial int8's $120.00/month [$95.00, $160.00]" in passed[0]["reason"]
    summary = build_summary(
        frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec, passed_over=passed,
        test_results={t: {"value": 0.985, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360} for t in ("base", "int8")},
        cost=dict(COST), inputs=INPUTS,
    )  # fmt: skip
    assert summary.within_noise["preferred"] == "int8" and "within measurement noise" in summary.recommendation_note


def test_no_candidate_cheaper_than_the_simpler_one_is_skipped_without_a_true_reason():
    rows = [
        _row("base", 1000.0, baseline=True),
        _row("pruned", 100.0, 80.0, 140.0, bits=8, prune_method="l1_unstructured", prune_ratio=0.5),
        _row("int8", 120.0, 95.0, 160.0, drop=0.002, bits=8),
        _row("int8-d", 118.0, 95.0, 160.0, drop=0.006, bits=8),  # cheaper than int8 and as simple: int8 is not preferred
    ]
    rec, passed = recommend(_frame(rows), 0.01, baseline_test=0.99, test_quality=_all_hold)
    assert rec["trial_id"] == "pruned" and passed == []


def test_without_overlap_the_cheapest_stays_recommended():
    rows = [
        _row("base", 1000.0, baseline=True),
        _row("pruned", 100.0, 80.0, 110.0, bits=8, prune_method="l1_unstructured", prune_ratio=0.5),
        _row("int8", 120.0, 115.0, 160.0, drop=0.002, bits=8),
    ]
    rec, passed = recommend(_frame(rows), 0.01, baseline_test=0.99, test_quality=_all_hold)
    assert rec["trial_id"] == "pruned" and passed == []


def test_the_price_on_the_measured_architecture_is_shown_beside_a_cross_architecture_one():
    catalog = load_catalog(None, region="us-east-1", instance_filter=["c7i.*", "c7g.*"])
    metrics = CandidateMetrics(
        throughput_sps=2500.0, batch_latency_p95_ms=10.0, peak_mem_bytes=10_000_000, size_bytes=100_000,
        device_kind="cpu", device_name="test x86", cpu_threads=4, cpu_arch="x86_64", bits=32,
    )  # fmt: skip
    cost = price_candidate(metrics, Traffic(peak_rps=10_000, latency_slo_p95_ms=50), catalog)
    assert cost.instance_type.startswith("c7g") and cost.cross_architecture
    shown = cheapest_on_measured_arch(cost)
    x86 = [c for c in cost.per_instance if c.instance_type.startswith("c7i") and c.feasible]
    cheapest = min(x86, key=lambda c: c.monthly_usd)
    assert (shown["instance_type"], shown["replicas"], shown["monthly_usd"]) == (cheapest.instance_type, cheapest.replicas, cheapest.monthly_usd)
    assert shown["monthly_usd"] > cost.monthly_usd
    only_x86 = price_candidate(metrics, Traffic(peak_rps=10_000, latency_slo_p95_ms=50), load_catalog(instance_filter=["c7i.*"]))
    assert cheapest_on_measured_arch(only_x86) is None  # nothing projected across architectures: nothing to add
