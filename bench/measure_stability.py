"""Does a candidate measure the same in a fresh process? And does its recommended instance change?

Five candidates on digits (teacher, structured 50%, int8, structured 50% + distillation
+ int8, unstructured 80%) are built and measured in 5 fresh Python processes, one
after another. Each process runs exactly what a trial runs: apply_recipe, then
search.trial.measure_candidate (the candidate's batches interleaved with the
teacher's; throughput = ratio to the teacher × this machine's kept teacher
reference) with the product's repeats and the demo's threads, then price_candidate
on search_spaces/digits.yaml's traffic and catalog.

Reported per candidate: the spread across processes of the throughput a trial
prices, of the raw in-process median (raw_throughput_sps), of the ratio and of
latency, as (max − min) / median and the largest deviation from the median; and
whether the recommended instance type and replica count stay the same. With
--fresh-reference each process measures its own teacher reference (what a new
machine does on its first trial). Writes bench/results/measure_stability.json
(or measure_stability_fresh_reference.json).

Run: `.venv/bin/python bench/measure_stability.py [--processes 5] [--threads N] [--kd-steps 300] [--fresh-reference]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
CONFIG = REPO / "search_spaces" / "digits.yaml"
MARK = "MEASURE_STABILITY_JSON "
TARGET_SPREAD = 0.10  # ±10% around the median


def candidates(kd_steps: int) -> dict:
    from orchestrator.compress import Recipe

    return {
        "teacher": Recipe(),
        "structured_50": Recipe(prune_method="structured", prune_ratio=0.5),
        "int8": Recipe(bits=8),
        f"structured_50_kd{kd_steps}_int8": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=kd_steps, bits=8),
        "unstructured_80": Recipe(prune_method="unstructured", prune_ratio=0.8),
    }


def worker(threads: int | None, kd_steps: int, reference_root: str | None) -> None:
    """One fresh process: build, measure and price every candidate exactly as a trial does; print one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from orchestrator.compress import apply_recipe
    from orchestrator.config import load_config
    from orchestrator.cost.model import price_candidate
    from orchestrator.search.runner import prepare
    from orchestrator.runtimes import kernel_archs
    from orchestrator.search.trial import candidate_metrics, measure_candidate

    config = load_config(CONFIG)
    prepared = prepare(config)
    task, traffic, settings = prepared.task, config.traffic, config.search
    threads = threads or max(1, int(settings.resources_per_trial.cpu))
    torch.set_num_threads(threads)
    teacher = task.teacher()
    batch = task.example_batch(traffic.serving_batch_size)
    out = {}
    for name, recipe in candidates(kd_steps).items():
        started = time.perf_counter()
        compressed = apply_recipe(task, recipe, teacher=teacher)
        measured = measure_candidate(compressed, teacher, batch, settings, threads, Path(reference_root) if reference_root else None)
        m = measured.metrics
        cost = price_candidate(
            candidate_metrics(measured, recipe.bits, config.deployment.measured_instance_type, kernel_archs(compressed.record.steps)),
            traffic,
            prepared.catalog,
        )
        out[name] = {
            "val_quality": task.evaluate(compressed.model, "val")["value"],
            "throughput_sps": measured.throughput_sps,
            "raw_throughput_sps": m.throughput_sps,
            "throughput_ratio_to_teacher": m.throughput_ratio_to_reference,
            "teacher_reference_sps": measured.reference.throughput_sps if measured.reference else None,
            "reference_measured_at": measured.reference.measured_at if measured.reference else None,
            "batch_latency_p50_ms": m.batch_latency_p50_ms,
            "batch_latency_p95_ms": m.batch_latency_p95_ms,
            "latency_p50_ms": m.latency_p50_ms,
            "latency_p95_ms": m.latency_p95_ms,
            "peak_mem_bytes": m.peak_mem_bytes,
            "size_bytes": m.size_bytes,
            "instance_type": cost.instance_type,
            "replicas": cost.replicas,
            "monthly_usd": cost.monthly_usd,
            "feasible": cost.feasible,
            "seconds": round(time.perf_counter() - started, 2),
        }
    print(MARK + json.dumps({"pid": os.getpid(), "threads": threads, "candidates": out}), flush=True)


def spread(values: list[float]) -> dict:
    """median, min, max, (max − min)/median and the largest |x − median|/median."""
    med = statistics.median(values)
    return {
        "median": round(med, 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "range_over_median": round((max(values) - min(values)) / med, 4),
        "max_deviation_from_median": round(max(abs(v - med) for v in values) / med, 4),
        "values": [round(v, 4) for v in values],
    }


def summarize(runs: list[dict]) -> dict:
    """Per candidate: spreads across processes, and whether the recommendation moved."""
    names = list(runs[0]["candidates"])
    out = {}
    for name in names:
        rows = [r["candidates"][name] for r in runs]
        instances = [r["instance_type"] for r in rows]
        replicas = [r["replicas"] for r in rows]
        out[name] = {
            "throughput_sps": spread([r["throughput_sps"] for r in rows]),
            "batch_latency_p50_ms": spread([r["batch_latency_p50_ms"] for r in rows]),
            "batch_latency_p95_ms": spread([r["batch_latency_p95_ms"] for r in rows]),
            "latency_p50_ms": spread([r["latency_p50_ms"] for r in rows]),
            "latency_p95_ms": spread([r["latency_p95_ms"] for r in rows]),
            "raw_throughput_sps": spread([r["raw_throughput_sps"] for r in rows]),
            "throughput_ratio_to_teacher": spread([r["throughput_ratio_to_teacher"] for r in rows]),
            "teacher_reference_sps": sorted({r["teacher_reference_sps"] for r in rows}),
            "monthly_usd": spread([r["monthly_usd"] for r in rows if r["monthly_usd"] is not None]) if all(r["monthly_usd"] is not None for r in rows) else None,
            "instance_types": instances,
            "replicas": replicas,
            "instance_unchanged": len(set(instances)) == 1,
            "replicas_unchanged": len(set(replicas)) == 1,
            "val_quality": sorted({r["val_quality"] for r in rows}),
            "size_bytes": sorted({r["size_bytes"] for r in rows}),
            "peak_mem_bytes": sorted({r["peak_mem_bytes"] for r in rows}),
        }
    return out


def targets(per: dict) -> dict:
    """Throughput within ±10% of the median in every process; instance and replicas unchanged."""
    thr = {n: v["throughput_sps"]["max_deviation_from_median"] for n, v in per.items()}
    raw = {n: v["raw_throughput_sps"]["max_deviation_from_median"] for n, v in per.items()}
    ratio = {n: v["throughput_ratio_to_teacher"]["max_deviation_from_median"] for n, v in per.items()}
    checks = {
        "throughput_within_10pct": all(d <= TARGET_SPREAD for d in thr.values()),
        "instance_unchanged": all(v["instance_unchanged"] for v in per.values()),
        "replicas_unchanged": all(v["replicas_unchanged"] for v in per.values()),
    }
    return {
        "throughput_max_deviation_by_candidate": thr,
        "worst_throughput_deviation": max(thr.values()),
        "ratio_to_teacher_max_deviation_by_candidate": ratio,
        "raw_throughput_max_deviation_by_candidate": raw,
        "raw_throughput_within_10pct": all(d <= TARGET_SPREAD for d in raw.values()),
        "checks": checks,
        "all_met": all(checks.values()),
        "target": "throughput_sps (as a trial prices it) within ±10% of the median across processes; "
        "recommended instance type and replicas the same in every process",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: digits.yaml's resources_per_trial.cpu, as a trial uses")
    parser.add_argument("--kd-steps", type=int, default=300)
    parser.add_argument("--fresh-reference", action="store_true",
                        help="each process measures its own teacher reference (in a temporary folder) instead of the kept one")
    parser.add_argument("--reference-root", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.threads, args.kd_steps, args.reference_root)
        return
    from _common import machine, write

    started = time.perf_counter()
    runs = []
    for i in range(args.processes):
        cmd = [sys.executable, __file__, "--worker", "--kd-steps", str(args.kd_steps)]
        if args.fresh_reference:
            cmd += ["--reference-root", tempfile.mkdtemp(prefix="hedgerow-reference-")]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"process {i} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        run = json.loads(line[len(MARK):])
        run["seconds"] = round(time.perf_counter() - t0, 1)
        runs.append(run)
        print(f"process {i + 1}/{args.processes} (pid {run['pid']}): {run['seconds']}s  " + "  ".join(
            f"{n} {c['throughput_sps']:.0f}sps {c['instance_type']}x{c['replicas']}" for n, c in run["candidates"].items()), flush=True)  # fmt: skip
    per = summarize(runs)
    result = targets(per)
    payload = {
        "benchmark": "measure_stability",
        "task": "digits",
        "processes": args.processes,
        "threads": runs[0]["threads"],
        "kd_steps": args.kd_steps,
        "method": "each process (sequential, fresh interpreter) runs apply_recipe + search.trial.measure_candidate "
        "(SearchSettings' measure_batch_repeats/measure_latency_repeats/measure_rounds, candidate batches interleaved with "
        "the teacher's) and prices with price_candidate on digits.yaml's traffic and catalog, as a trial does",
        "reference": "fresh: each process measured its own teacher reference" if args.fresh_reference
        else "kept: the machine's teacher reference from the cache (measured by the first process if absent)",
        "machine": machine(),
        "targets": result,
        "candidates": per,
        "runs": runs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write("measure_stability_fresh_reference" if args.fresh_reference else "measure_stability", payload)
    for name, v in per.items():
        t = v["throughput_sps"]
        print(f"{name:26s} thr {t['median']:9.0f} sps  range {t['range_over_median']:.1%}  max dev {t['max_deviation_from_median']:.1%}  "
              f"raw dev {v['raw_throughput_sps']['max_deviation_from_median']:.1%}  ratio dev {v['throughput_ratio_to_teacher']['max_deviation_from_median']:.1%}  instances {sorted(set(v['instance_types']))} "
              f"replicas {sorted(set(v['replicas']))}")  # fmt: skip
    print(result["checks"], "all met" if result["all_met"] else "NOT all met")
    print(path)


if __name__ == "__main__":
    main()
