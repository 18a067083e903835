"""A hand-made run folder, written through the search's own results/Pareto/summary code, for fast report tests.

Priced with the real cost model on the bundled catalog; no Ray, no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.model import CandidateMetrics, price_candidate
from orchestrator.cost.traffic import Traffic
from orchestrator.report.pareto import mark_pareto
from orchestrator.report.results import trials_frame
from orchestrator.report.summary import build_summary, recommend, search_cost

TRAFFIC = {"peak_rps": 2000, "latency_slo_p95_ms": 250, "serving_batch_size": 64, "target_utilization": 0.6,
           "min_replicas": 2, "hours_per_month": 730}  # fmt: skip
FILTER = ["c7i.*", "m7i.*", "g5.*"]
KNOBS = {"prune_importance": "l2", "prune_scope": "global", "int4_group_size": 32, "kd_temperature": 4.0,
         "kd_alpha": 0.7, "kd_learning_rate": 0.001, "kd_batch_size": 64, "qat": False}  # fmt: skip

# trial id, knobs, quality, throughput (sps, 1 thread), batch p95 (ms)
FINISHED = [
    ("t0base", {"prune_method": "none", "prune_ratio": 0.0, "bits": 32, "kd_steps": 0}, 0.990, 400.0, 120.0),
    ("t1", {"prune_method": "structured", "prune_ratio": 0.3, "bits": 8, "kd_steps": 0}, 0.985, 1600.0, 40.0),
    ("t2", {"prune_method": "structured", "prune_ratio": 0.6, "bits": 8, "kd_steps": 0}, 0.700, 4000.0, 20.0),
    ("t3", {"prune_method": "structured", "prune_ratio": 0.6, "bits": 8, "kd_steps": 100, "kd_alpha": 0.5}, 0.984, 3900.0, 21.0),
    ("t4", {"prune_method": "unstructured", "prune_ratio": 0.8, "bits": 32, "kd_steps": 100}, 0.989, 420.0, 900.0),
    ("t5", {"prune_method": "unstructured", "prune_ratio": 0.5, "bits": 16, "kd_steps": 0}, 0.988, 800.0, 60.0),
]  # fmt: skip


def _row(trial_id, knobs, quality, sps, p95, base_quality, traffic, catalog):
    recipe = {**KNOBS, **knobs}
    metrics = CandidateMetrics(
        throughput_sps=sps, batch_latency_p95_ms=p95, latency_p50_ms=1.0, latency_p95_ms=2.0, peak_mem_bytes=20_000_000,
        size_bytes=int(4_000_000 * recipe["bits"] / 32 * (1 - recipe["prune_ratio"] / 2)), device_kind="cpu",
        device_name="Test CPU", cpu_threads=1, bits=recipe["bits"],
    )  # fmt: skip
    cost = price_candidate(metrics, traffic, catalog)
    row = {
        **recipe, "trial_id": trial_id, "status": "finished", "final": True, "baseline": trial_id == "t0base",
        "recipe_key": f"key-{trial_id}", "quality_metric": "accuracy", "quality": quality, "accuracy": quality,
        "accuracy_drop": base_quality - quality, "quality_drop": base_quality - quality, "quality_ci95_low": quality - 0.01, "quality_ci95_high": min(1.0, quality + 0.005),
        "quality_n": 359, "params": 900_000, "size_bytes": metrics.size_bytes, "peak_mem_bytes": metrics.peak_mem_bytes,
        "throughput_sps": sps, "batch_latency_p95_ms": p95, "latency_p50_ms": 1.0, "latency_p95_ms": 2.0,
        "device": "Test CPU", "device_kind": "cpu", "threads": 1, "instance_type": cost.instance_type,
        "instance_throughput_sps": cost.throughput_sps,
        "replicas": cost.replicas, "monthly_usd": cost.monthly_usd, "projected": cost.projected, "feasible": cost.feasible,
        "cost_reason": cost.reason, "trial_seconds": 10.0, "fallbacks": "int4 fell back" if trial_id == "t5" else "",
    }  # fmt: skip
    record = {"version": 1, "row": row, "recipe": recipe, "compression": {"steps": [], "fallbacks": []},
              "metrics": {"device": {"kind": "cpu", "name": "Test CPU", "arch": "x86_64", "capability": "AVX2", "threads": 1}},
              "quality": {"metric": "accuracy", "value": quality}, "cost": cost.model_dump(mode="json"),
              "throughput": {"method": "ratio to the teacher × reference", "throughput_sps": sps, "ratio_to_teacher": sps / 400.0,
                             "ratio_rounds": [sps / 400.0] * 5, "teacher_reference_sps": 400.0, "raw_throughput_sps": sps,
                             "reference": {"throughput_sps": 400.0, "batch_shape": [64, 1, 8, 8], "host": "test-host",
                                           "device": {"threads": 1}, "measured_at": "2026-11-26T00:00:00+0000",
                                           "path": "/cache/reference/teacher-sps-test.json"}}}  # fmt: skip
    return row, record


def make_run(folder: Path, name: str = "digits-fake-run", baseline_fast: bool = True, extra_rows: list | None = None) -> Path:
    """Write a finished run folder; with baseline_fast=False the baseline misses the SLO (no savings figure)."""
    root = folder / name
    (root / "trials").mkdir(parents=True)
    traffic = Traffic(**TRAFFIC)
    catalog = load_catalog(None, region="us-east-1", instance_filter=FILTER)
    base_quality = FINISHED[0][2]
    rows, records = [], {}
    for trial_id, knobs, quality, sps, p95 in FINISHED:
        if trial_id == "t0base" and not baseline_fast:
            p95 = 400.0
        row, record = _row(trial_id, knobs, quality, sps, p95, base_quality, traffic, catalog)
        rows.append(row)
        records[row["recipe_key"]] = record
    rows.append({**KNOBS, "trial_id": "t6fail", "status": "failed", "prune_method": "semi_structured_2_4", "prune_ratio": 0.5,
                 "bits": 8, "kd_steps": 0, "error": "RayTaskError(UnsupportedOnDevice): \x1b[36mray::x\x1b[39m "
                 "File \"prune.py\", line 1 orchestrator.errors.UnsupportedOnDevice: 2:4 needs a GPU | <b>"})  # fmt: skip
    rows.append({**KNOBS, "trial_id": "t7stop", "status": "stopped", "prune_method": "unstructured", "prune_ratio": 0.9,
                 "bits": 4, "kd_steps": 200, "quality": 0.91, "error": "stopped early by the scheduler at 50 distillation steps"})  # fmt: skip
    rows.extend(extra_rows or [])
    frame = trials_frame(rows)
    frame["pareto"] = mark_pareto(frame)
    tests = {r["trial_id"]: {"metric": "accuracy", "value": r["quality"] - 0.001, "higher_is_better": True, "split": "test",
                             "n_examples": 360, "ci95_low": r["quality"] - 0.012, "ci95_high": min(1.0, r["quality"] + 0.004)}
             for r in rows if r["status"] == "finished"}  # fmt: skip
    frame["test_accuracy"] = frame["trial_id"].map(lambda t: tests[t]["value"] if t in tests else None)
    chosen, passed = recommend(frame, 0.01, tests["t0base"]["value"], lambda row: tests[row["trial_id"]])
    inputs = {"traffic": {**traffic.model_dump(mode="json"), "days_per_month": traffic.days_per_month},
              "objective": {"metric": "accuracy", "max_quality_drop": 0.01}, "catalog_file": "bundled",
              "catalog_as_of": str(catalog.as_of), "region": catalog.region,
              "instance_types": [i.instance_type for i in catalog.instances], "memory_headroom": 0.2}  # fmt: skip
    summary = build_summary(
        frame, run_id=name, task="digits", metric="accuracy", max_drop=0.01, recommended=chosen, passed_over=passed,
        test_results=tests, cost=search_cost(frame, 1.0, 0.0, catalog), inputs=inputs,
    )  # fmt: skip
    frame.to_csv(root / "trials.csv", index=False)
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    config = {"task": {"name": "digits"}, "objective": {"metric": "accuracy", "max_quality_drop": 0.01}, "traffic": TRAFFIC,
              "deployment": {"catalog": "bundled", "region": "us-east-1", "instance_filter": FILTER},
              "search": {"trials": len(rows), "sampler": "tpe", "seed": 0, "scheduler": "asha",
                         "resources_per_trial": {"cpu": 1.0, "gpu": 0.0}},
              "space": {"prune_method": {"choices": ["none", "structured", "unstructured"]},
                        "kd_learning_rate": {"low": 0.0003, "high": 0.003, "log": True}}}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "run.json").write_text(json.dumps({"run_id": name, "study_name": name}))
    for key, record in records.items():
        (root / "trials" / f"{key}.json").write_text(json.dumps(record, default=str))
    return root


def trials(root: Path) -> pd.DataFrame:
    """The fake run's trials.csv as the report reads it."""
    from orchestrator.report.rundata import load_trials

    return load_trials(root / "trials.csv")
