"""A hand-made run folder, written through the search's own results/Pareto/summary code, for fast report tests.

Priced with the real cost model on the bundled catalog; no Ray, no training. Every row carries the
runtime columns (runtime, startup_seconds, kernel_archs) and every record its start-up; with
runtimes=True the run also searched torch.compile and ONNX Runtime and priced Graviton (c7g, arm64).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from orchestrator.compress import CompressionRecord, Recipe
from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.model import CandidateMetrics, price_candidate
from orchestrator.cost.traffic import Traffic
from orchestrator.report.pareto import mark_pareto
from orchestrator.report.records import TrialRecord
from orchestrator.report.results import trials_frame
from orchestrator.report.summary import build_summary, recommend, search_cost
from orchestrator.search.finalize import add_test_drops

TRAFFIC = {"peak_rps": 2000, "latency_slo_p95_ms": 250, "serving_batch_size": 64, "target_utilization": 0.6,
           "min_replicas": 2, "hours_per_month": 730}  # fmt: skip
FILTER = ["c7i.*", "m7i.*", "g5.*"]
RUNTIMES_FILTER = [*FILTER, "c7g.*"]  # arm64: only candidates whose kernels run there are priced on it
RUNTIMES_PEAK_RPS = 20_000  # enough traffic that $ per core, not the replica floor, sets the bill
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
# trial id, knobs, quality, throughput, batch p95, start-up seconds, kernel_archs: the other runtimes (runtimes=True)
RUNTIME_TRIALS = [
    ("t8ort", {"prune_method": "structured", "prune_ratio": 0.3, "bits": 8, "kd_steps": 0, "runtime": "onnxruntime"},
     0.985, 3500.0, 30.0, 0.412, "x86_64,arm64"),
    ("t9cmp", {"prune_method": "structured", "prune_ratio": 0.3, "bits": 8, "kd_steps": 0, "runtime": "compiled"},
     0.985, 4200.0, 25.0, 12.5, "x86_64"),
    ("t10cmp", {"prune_method": "none", "prune_ratio": 0.0, "bits": 32, "kd_steps": 0, "runtime": "compiled"},
     0.990, 600.0, 80.0, 9.8, "any"),
]  # fmt: skip
EAGER_STARTUP = "first batch of a fresh copy of the eager module (nothing to compile)"


def _eager(knobs: dict) -> tuple[float, str]:
    """An eager trial's start-up seconds and kernel_archs: torch.ao's FX int8 is x86-only."""
    return 0.05 + knobs["prune_ratio"] / 100, "x86_64" if knobs["bits"] == 8 else "any"


def _row(trial_id, knobs, quality, sps, p95, base_quality, traffic, catalog, startup=0.05, archs="any"):
    recipe = {**KNOBS, "runtime": "eager", **knobs}
    metrics = CandidateMetrics(
        throughput_sps=sps, batch_latency_p95_ms=p95, latency_p50_ms=1.0, latency_p95_ms=2.0, peak_mem_bytes=20_000_000,
        size_bytes=int(4_000_000 * recipe["bits"] / 32 * (1 - recipe["prune_ratio"] / 2)), device_kind="cpu",
        device_name="Test CPU", cpu_threads=1, bits=recipe["bits"], cpu_arch="x86_64",
        cpu_archs=None if archs == "any" else archs.split(","),
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
        "startup_seconds": startup, "kernel_archs": archs,
    }  # fmt: skip
    typed = Recipe(**recipe)
    record = TrialRecord(
        row=row, recipe=typed, compression=CompressionRecord(recipe=typed, device="cpu", steps=[]),
        metrics={"device": {"kind": "cpu", "name": "Test CPU", "arch": "x86_64", "capability": "AVX2", "threads": 1}},
        quality={"metric": "accuracy", "value": quality}, cost=cost,
        startup={"seconds": startup, "runtime": recipe["runtime"], "method": EAGER_STARTUP
                 if recipe["runtime"] == "eager" else f"{recipe['runtime']} build + first batch, timed while building"},
        throughput={"method": "ratio to the teacher × reference", "throughput_sps": sps, "ratio_to_teacher": sps / 400.0,
                    "ratio_rounds": [sps / 400.0] * 5, "teacher_reference_sps": 400.0, "raw_throughput_sps": sps,
                    "reference": {"throughput_sps": 400.0, "batch_shape": [64, 1, 8, 8], "host": "test-host",
                                  "device": {"threads": 1}, "measured_at": "2026-11-26T00:00:00+0000",
                                  "path": "/cache/reference/teacher-sps-test.json"}},
    )  # fmt: skip
    return row, record


def make_run(
    folder: Path, name: str = "digits-fake-run", baseline_fast: bool = True, extra_rows: list | None = None,
    runtimes: bool = False,
) -> Path:
    """Write a finished run folder; with baseline_fast=False the baseline misses the SLO (no savings figure).

    runtimes=True adds the compiled and ONNX Runtime trials, prices c7g (arm64) and raises peak traffic.
    """
    root = folder / name
    (root / "trials").mkdir(parents=True)
    traffic_config = {**TRAFFIC, "peak_rps": RUNTIMES_PEAK_RPS} if runtimes else TRAFFIC
    instance_filter = RUNTIMES_FILTER if runtimes else FILTER
    traffic = Traffic(**traffic_config)
    catalog = load_catalog(None, region="us-east-1", instance_filter=instance_filter)
    base_quality = FINISHED[0][2]
    trials = [(*t, *_eager(t[1])) for t in FINISHED] + (RUNTIME_TRIALS if runtimes else [])
    rows, records = [], {}
    for trial_id, knobs, quality, sps, p95, startup, archs in trials:
        if trial_id == "t0base" and not baseline_fast:
            p95 = 400.0
        row, record = _row(trial_id, knobs, quality, sps, p95, base_quality, traffic, catalog, startup, archs)
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
    frame["test_quality"] = frame["trial_id"].map(lambda t: tests[t]["value"] if t in tests else None)
    frame["test_accuracy"] = frame["test_quality"]
    add_test_drops(frame, {t: dict(r) for t, r in tests.items()}, "t0base")  # as finalize pairs each with the teacher
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
    summary.write(root / "summary.json")
    config = {"task": {"name": "digits"}, "objective": {"metric": "accuracy", "max_quality_drop": 0.01},
              "traffic": traffic_config,
              "deployment": {"catalog": "bundled", "region": "us-east-1", "instance_filter": instance_filter},
              "search": {"trials": len(rows), "sampler": "tpe", "seed": 0, "scheduler": "asha",
                         "resources_per_trial": {"cpu": 1.0, "gpu": 0.0}},
              "space": {"prune_method": {"choices": ["none", "structured", "unstructured"]},
                        "prune_ratio": {"low": 0.3, "high": 0.8}, "bits": {"choices": [32, 16, 8, 4]},
                        "kd_steps": {"choices": [0, 100, 200]}, "kd_alpha": {"low": 0.5, "high": 0.7},
                        "prune_importance": "l2", "prune_scope": "global", "int4_group_size": 32,
                        "kd_temperature": 4.0, "kd_batch_size": 64, "qat": False,
                        "kd_learning_rate": {"low": 0.0003, "high": 0.003, "log": True},
                        **({"runtime": {"choices": ["eager", "compiled", "onnxruntime"]}} if runtimes else {})}}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "run.json").write_text(json.dumps({"run_id": name, "study_name": name}))
    for key, record in records.items():
        record.write(root / "trials" / f"{key}.json")
    return root


def strip_runtimes(root: Path) -> Path:
    """Make a fake run folder look like one written before runtimes: no runtime columns, keys or start-up records."""
    frame = pd.read_csv(root / "trials.csv", dtype={"trial_id": str})
    frame.drop(columns=["runtime", "startup_seconds", "kernel_archs"]).to_csv(root / "trials.csv", index=False)
    summary = json.loads((root / "summary.json").read_text())
    for candidate in [summary["baseline"], summary["recommended"], *summary["pareto"]]:
        if candidate:
            candidate.pop("runtime", None)
            candidate.pop("startup_seconds", None)
            candidate["knobs"].pop("runtime", None)
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    for path in (root / "trials").glob("*.json"):
        record = json.loads(path.read_text())
        record.pop("startup", None)
        record["row"] = {k: v for k, v in record["row"].items() if k not in ("runtime", "startup_seconds", "kernel_archs")}
        path.write_text(json.dumps(record))
    return root


def trials(root: Path) -> pd.DataFrame:
    """The fake run's trials.csv as the report reads it."""
    from orchestrator.report.rundata import load_trials

    return load_trials(root / "trials.csv")


# A decoder LLM's run (tiny Llama shapes): quality is log-perplexity, candidates are priced by their tokens.
LLM_TRAFFIC = {"peak_rps": 100, "serving_batch_size": 1, "target_utilization": 0.6, "min_replicas": 1, "hours_per_month": 730,
               "tokens": {"prompt_tokens": 24, "output_tokens": 16, "ttft_slo_p95_ms": 1000, "tpot_slo_p95_ms": 50,
                          "concurrency": [1, 2, 4]}}  # fmt: skip
LLM_FILTER = ["c7i.*", "m7i.*"]
LLM_MAX_INCREASE = 0.05  # +5% perplexity: max_quality_drop ln(1.05)
LLM_KNOBS = {"int4_group_size": 64, "kd_batch_size": 4}
# trial id, knobs, val log-perplexity, speed (× the teacher's tokens/s), layers kept
LLM_FINISHED = [
    ("l0base", {"drop_layers": 0, "bits": 32, "kd_steps": 0}, 2.30, 1.0, 4),
    ("l1", {"drop_layers": 0, "bits": 8, "kd_steps": 0}, 2.32, 2.0, 4),
    ("l2", {"drop_layers": 1, "bits": 4, "kd_steps": 300}, 2.33, 3.0, 3),
    ("l3", {"drop_layers": 2, "bits": 4, "kd_steps": 0}, 2.45, 4.0, 2),
    ("l4", {"drop_layers": 1, "bits": 32, "kd_steps": 0}, 2.40, 1.2, 3),  # worse and dearer than l1: off the front
]  # fmt: skip
# The teacher's generation figures per concurrency: (ttft p95 ms, tpot p95 ms, output tokens/s, peak bytes).
LLM_POINTS = {1: (40.0, 10.0, 100.0, 900_000_000), 2: (70.0, 12.0, 166.0, 950_000_000), 4: (130.0, 60.0, 66.0, 1_000_000_000)}
LLM_WEIGHT_BYTES, LLM_KV_BYTES_PER_TOKEN = 540_000_000, 9_216
LLM_DIAGNOSTICS = "perplexity,kl_per_token,top1_agreement"


def llm_metrics(speed: float, bits: int):
    """A candidate's token figures: the teacher's, `speed` times as fast (latencies divided, tokens/s multiplied)."""
    from orchestrator.cost.candidate import TokenCandidateMetrics, TokenPoint

    points = [TokenPoint(concurrency=c, ttft_p95_ms=t / speed, tpot_p95_ms=p / speed, output_tokens_per_s=s * speed,
                         peak_mem_bytes=int(m * bits / 32)) for c, (t, p, s, m) in LLM_POINTS.items()]  # fmt: skip
    return TokenCandidateMetrics(points=points, weight_bytes=int(LLM_WEIGHT_BYTES * bits / 32),
                                 kv_bytes_per_token=LLM_KV_BYTES_PER_TOKEN, device_kind="cpu", device_name="Test CPU",
                                 cpu_threads=1, bits=bits)  # fmt: skip


def llm_test_results() -> dict[str, dict]:
    """The held-out test result of each LLM trial: val + 0.01 nats, its paired drop ± 0.01 (as finalize pairs them)."""
    base = LLM_FINISHED[0][2] + 0.01
    out = {}
    for trial_id, _, quality, _, _ in LLM_FINISHED:
        value, drop = quality + 0.01, quality + 0.01 - base
        out[trial_id] = {"metric": "log_perplexity", "value": value, "higher_is_better": False, "split": "test",
                         "n_examples": 64, "ci95_low": value - 0.02, "ci95_high": value + 0.02, "drop": drop,
                         "drop_ci95_low": drop - 0.01 if drop else 0.0, "drop_ci95_high": drop + 0.01 if drop else 0.0}  # fmt: skip
    return out


def make_llm_run(folder: Path, name: str = "smollm-fake-run") -> Path:
    """Write a finished decoder-LLM run folder, priced by orchestrator.cost.tokens.price_tokens on the bundled catalog."""
    import math

    from orchestrator.cost.tokens import price_tokens

    root = folder / name
    (root / "trials").mkdir(parents=True)
    traffic = Traffic(**LLM_TRAFFIC)
    catalog = load_catalog(None, region="us-east-1", instance_filter=LLM_FILTER)
    max_drop = math.log1p(LLM_MAX_INCREASE)
    base_quality = LLM_FINISHED[0][2]
    rows, records = [], {}
    for trial_id, knobs, quality, speed, layers in LLM_FINISHED:
        recipe = {**LLM_KNOBS, "runtime": "eager", **knobs}
        metrics = llm_metrics(speed, recipe["bits"])
        cost = price_tokens(metrics, traffic, catalog)
        point = next(p for p in metrics.points if p.concurrency == (cost.concurrency or 1))
        drop = quality - base_quality
        row = {
            **recipe, "trial_id": trial_id, "status": "finished", "final": True, "baseline": trial_id == "l0base",
            "recipe_key": f"key-{trial_id}", "quality_metric": "log_perplexity", "quality": quality, "accuracy": quality,
            "quality_drop": drop, "accuracy_drop": drop, "quality_ci95_low": quality - 0.015, "quality_ci95_high": quality + 0.015,
            "quality_drop_ci95_low": drop - 0.008 if drop else 0.0, "quality_drop_ci95_high": drop + 0.008 if drop else 0.0,
            "quality_n": 32, "params": 135_000_000, "size_bytes": None, "peak_mem_bytes": point.peak_mem_bytes,
            "throughput_sps": point.output_tokens_per_s / 16, "batch_latency_p95_ms": point.ttft_p95_ms + 15 * point.tpot_p95_ms,
            "latency_p50_ms": 1.0, "latency_p95_ms": point.ttft_p95_ms + 15 * point.tpot_p95_ms, "device": "Test CPU",
            "device_kind": "cpu", "threads": 1, "instance_type": cost.instance_type,
            "instance_throughput_sps": cost.throughput_sps, "replicas": cost.replicas, "monthly_usd": cost.monthly_usd,
            "projected": cost.projected, "feasible": cost.feasible, "cost_reason": cost.reason, "trial_seconds": 30.0,
            "fallbacks": "", "startup_seconds": None, "kernel_archs": "any",
            "concurrency": cost.concurrency, "output_tokens_per_s": point.output_tokens_per_s,
            "decode_tokens_per_s_c1": metrics.points[0].output_tokens_per_s, "ttft_p95_ms": point.ttft_p95_ms,
            "tpot_p95_ms": point.tpot_p95_ms, "prefill_tokens_per_s": 24_000.0 * speed, "weight_bytes": metrics.weight_bytes,
            "kv_bytes_per_token": LLM_KV_BYTES_PER_TOKEN, "usd_per_million_output_tokens": cost.usd_per_million_output_tokens,
            "encoder_layers": layers, "encoder_heads_per_layer": 9, "encoder_ffn_per_layer": 1536,
            "teacher_encoder_layers": 4, "teacher_encoder_heads_per_layer": 9, "teacher_encoder_ffn_per_layer": 1536,
            "diagnostic_metrics": LLM_DIAGNOSTICS, "perplexity": math.exp(quality), "kl_per_token": drop / 2,
            "top1_agreement": 1.0 - drop,
        }  # fmt: skip
        typed = Recipe(**recipe)
        records[row["recipe_key"]] = TrialRecord(
            row=row, recipe=typed, compression=CompressionRecord(recipe=typed, device="cpu", steps=[]),
            metrics={"device": {"kind": "cpu", "name": "Test CPU", "arch": "x86_64", "capability": "AVX2", "threads": 1}},
            quality={"metric": "log_perplexity", "value": quality, "higher_is_better": False}, cost=cost,
            throughput={"method": "static batching at each concurrency, interleaved with the teacher"},
            diagnostics={"perplexity": math.exp(quality)},
        )  # fmt: skip
        rows.append(row)
    frame = trials_frame(rows)
    frame["pareto"] = mark_pareto(frame)
    tests = llm_test_results()
    frame["test_quality"] = frame["trial_id"].map(lambda t: tests[t]["value"])
    frame["test_accuracy"] = frame["test_quality"]
    add_test_drops(frame, {t: dict(r) for t, r in tests.items()}, "l0base")
    chosen, passed = recommend(frame, max_drop, tests["l0base"]["value"], lambda row: tests[row["trial_id"]])
    traffic_json = traffic.model_dump(mode="json")
    inputs = {"traffic": {**traffic_json, "days_per_month": traffic.days_per_month},
              "objective": {"metric": "log_perplexity", "max_quality_drop": max_drop,
                            "max_perplexity_increase": LLM_MAX_INCREASE},
              "catalog_file": "bundled", "catalog_as_of": str(catalog.as_of), "region": catalog.region,
              "instance_types": [i.instance_type for i in catalog.instances], "memory_headroom": 0.2}  # fmt: skip
    summary = build_summary(
        frame, run_id=name, task="examples.hf_causal_lm_task:make_task", label="SmolLM2-135M", metric="log_perplexity",
        max_drop=max_drop, recommended=chosen, passed_over=passed, test_results=tests,
        cost=search_cost(frame, 1.0, 0.0, catalog), inputs=inputs,
    )  # fmt: skip
    frame.to_csv(root / "trials.csv", index=False)
    summary.write(root / "summary.json")
    config = {"task": {"name": "examples.hf_causal_lm_task:make_task"},
              "objective": {"metric": "log_perplexity", "max_perplexity_increase": LLM_MAX_INCREASE},
              "traffic": LLM_TRAFFIC,
              "deployment": {"catalog": "bundled", "region": "us-east-1", "instance_filter": LLM_FILTER},
              "search": {"trials": len(rows), "sampler": "tpe", "seed": 0, "scheduler": "none",
                         "resources_per_trial": {"cpu": 1.0, "gpu": 0.0}},
              "space": {"drop_layers": {"choices": [0, 1, 2]}, "bits": {"choices": [32, 8, 4]},
                        "kd_steps": {"choices": [0, 300]}, **LLM_KNOBS}}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "run.json").write_text(json.dumps({"run_id": name, "study_name": name}))
    for key, record in records.items():
        record.write(root / "trials" / f"{key}.json")
    return root
