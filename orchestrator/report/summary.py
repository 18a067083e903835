"""The run's summary: baseline, the recommended candidate (held-out checked), the Pareto set, search cost."""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd

from orchestrator.cost.catalog import Catalog

KNOB_COLUMNS = [
    "prune_method", "prune_ratio", "prune_importance", "prune_scope", "bits", "int4_group_size",
    "kd_steps", "kd_temperature", "kd_alpha", "kd_learning_rate", "kd_batch_size", "qat",
]  # fmt: skip
HOURS = 3600.0


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _int(value: Any) -> int | None:
    """A count read from a column that also holds blanks (and so became float): 5.0 -> 5."""
    value = _clean(value)
    return None if value is None else int(value)


def knobs_of(row: pd.Series) -> dict[str, Any]:
    """The recipe knobs of a trial row."""
    return {k: _clean(row[k]) for k in KNOB_COLUMNS if k in row}


def within_bound(frame: pd.DataFrame, max_drop: float) -> pd.Series:
    """Finished, cost-feasible trials whose validation drop is within the bound."""
    return (
        (frame["status"] == "finished")
        & frame["feasible"].fillna(False).astype(bool)
        & (frame["accuracy_drop"].astype(float) <= max_drop + 1e-12)
    )


def recommend(
    frame: pd.DataFrame,
    max_drop: float,
    baseline_test: float,
    test_quality: Callable[[pd.Series], dict],
) -> tuple[pd.Series | None, list[dict[str, Any]]]:
    """Walk candidates from cheapest; the first whose held-out test drop also holds is recommended.

    `test_quality(row)` evaluates a candidate on the test split (memoized by the
    caller). Returns the chosen row (or None) and the candidates passed over.
    """
    candidates = frame[within_bound(frame, max_drop)].sort_values(
        ["monthly_usd", "quality", "throughput_sps", "trial_id"], ascending=[True, False, False, True]
    )
    passed_over = []
    for _, row in candidates.iterrows():
        test = test_quality(row)
        test_drop = baseline_test - test["value"]
        if test_drop <= max_drop + 1e-12:
            return row, passed_over
        passed_over.append(
            {
                "trial_id": row["trial_id"],
                "monthly_usd": _clean(row["monthly_usd"]),
                "reason": f"test drop {test_drop:.4f} exceeds the bound {max_drop} (validation drop {row['accuracy_drop']:.4f})",
            }
        )
    return None, passed_over


def search_cost(frame: pd.DataFrame, cpus_per_trial: float, gpus_per_trial: float, catalog: Catalog) -> dict[str, Any]:
    """CPU and GPU hours the trials took, priced per vCPU-hour / GPU-hour from the catalog's cheapest."""
    seconds = float(frame["trial_seconds"].fillna(0).astype(float).sum())
    cpu_hours = seconds * cpus_per_trial / HOURS
    gpu_hours = seconds * gpus_per_trial / HOURS
    cpu_rates = [(i.on_demand_usd_per_hour / i.vcpus, i.instance_type) for i in catalog.instances if not i.accelerator]
    gpu_rates = [(i.on_demand_usd_per_hour / i.accelerator_count, i.instance_type) for i in catalog.instances if i.accelerator and i.accelerator_count]
    cpu_rate, cpu_ref = min(cpu_rates) if cpu_rates else (0.0, None)
    gpu_rate, gpu_ref = min(gpu_rates) if gpu_rates else (0.0, None)
    usd = cpu_hours * cpu_rate + gpu_hours * gpu_rate
    return {
        "trial_seconds": round(seconds, 1),
        "cpu_hours": round(cpu_hours, 4),
        "gpu_hours": round(gpu_hours, 4),
        "usd_per_vcpu_hour": round(cpu_rate, 6),
        "usd_per_vcpu_hour_from": cpu_ref,
        "usd_per_gpu_hour": round(gpu_rate, 6),
        "usd_per_gpu_hour_from": gpu_ref,
        "usd": round(usd, 4),
        "method": "sum of trial wall seconds x resources per trial, priced at the catalog's cheapest on-demand vCPU-hour and GPU-hour",
    }


def _candidate(row: pd.Series) -> dict[str, Any]:
    return {
        "trial_id": row["trial_id"],
        "knobs": knobs_of(row),
        "accuracy": _clean(row["accuracy"]),
        "accuracy_drop": _clean(row["accuracy_drop"]),
        "quality": _clean(row["quality"]),
        "size_bytes": _int(row["size_bytes"]),
        "peak_mem_bytes": _int(row["peak_mem_bytes"]),
        "throughput_sps": _clean(row["throughput_sps"]),
        "latency_p95_ms": _clean(row["latency_p95_ms"]),
        "instance_type": _clean(row["instance_type"]),
        "replicas": _int(row["replicas"]),
        "monthly_usd": _clean(row["monthly_usd"]),
        "projected": _clean(row["projected"]),
        "test_accuracy": _clean(row.get("test_accuracy")),
    }


def build_summary(
    frame: pd.DataFrame,
    *,
    run_id: str,
    task: str,
    metric: str,
    max_drop: float,
    recommended: pd.Series | None,
    passed_over: list[dict],
    test_results: dict[str, dict],
    cost: dict[str, Any],
    inputs: dict[str, Any],
) -> dict[str, Any]:
    """summary.json's content (DESIGN.md contract keys plus what the report needs)."""
    base_rows = frame[frame["baseline"].fillna(False).astype(bool) & (frame["status"] == "finished")]
    baseline_row = base_rows.iloc[0] if len(base_rows) else None
    baseline = None
    if baseline_row is not None:
        baseline = {**_candidate(baseline_row), "test": test_results.get(baseline_row["trial_id"])}
    rec = None
    if recommended is not None:
        rec = _candidate(recommended)
        test = test_results[recommended["trial_id"]]
        rec.update(
            test_accuracy=test["value"],
            test_ci95=[test["ci95_low"], test["ci95_high"]],
            test_n=test["n_examples"],
            val_ci95=[_clean(recommended["quality_ci95_low"]), _clean(recommended["quality_ci95_high"])],
        )
        rec.update(savings_usd=None, savings_ratio=None)  # stay None where the baseline has no feasible price
        if baseline and baseline["monthly_usd"]:
            saved = baseline["monthly_usd"] - rec["monthly_usd"]
            rec.update(savings_usd=round(saved, 2), savings_ratio=round(saved / baseline["monthly_usd"], 4))
        if baseline and baseline["size_bytes"] and baseline["throughput_sps"]:  # known even where the baseline is unpriced
            size_base, thr_base = baseline["size_bytes"], baseline["throughput_sps"]
            rec.update(size_ratio=round(rec["size_bytes"] / size_base, 4), throughput_ratio=round(rec["throughput_sps"] / thr_base, 3))
        rec["passed_over"] = passed_over
        if cost["usd"] and (rec["savings_usd"] or 0) > 0:
            cost["payback_days"] = round(cost["usd"] / (rec["savings_usd"] / inputs["traffic"]["days_per_month"]), 4)
    pareto_rows = frame[frame["pareto"].astype(bool)].sort_values(["monthly_usd", "trial_id"])  # the report's order
    return {
        "run_id": run_id,
        "task": task,
        "quality_metric": metric,
        "max_quality_drop": max_drop,
        "n_trials": int(len(frame)),
        "n_finished": int((frame["status"] == "finished").sum()),
        "n_failed": int((frame["status"] == "failed").sum()),
        "n_stopped": int((frame["status"] == "stopped").sum()),
        "baseline": baseline,
        "recommended": rec,
        "recommendation_note": _note(rec, passed_over),
        "pareto": [_candidate(r) for _, r in pareto_rows.iterrows()],
        "search_cost": cost,
        "inputs": inputs,
    }


def _note(rec: dict | None, passed_over: list[dict]) -> str:
    if rec is None:
        return "no candidate is cost-feasible and within the quality bound on both validation and test"
    note = f"trial {rec['trial_id']}: the cheapest feasible candidate within the quality bound on validation and test"
    if passed_over:
        note += "; cheaper candidates passed over: " + "; ".join(f"{p['trial_id']} ({p['reason']})" for p in passed_over)
    return note
