"""What does a second thread add, and what does the demo's bill come to when a hyperthread is not a core?

1. The demo search (search_spaces/digits.yaml) is run, or an existing run folder is read
   (--run), for its recommended recipe.
2. The teacher and that recipe are measured at the demo's serving batch in interleaved
   rounds: one process with 1 thread, one process with 2 threads, and two 1-thread
   processes at once (their throughputs summed). Each reading lasts --seconds.
3. The demo's recommendation, and the uncompressed baseline, are priced from the run's
   stored measurements under smt_yield 1.0 (the default: a core is one thread's worth)
   and 2.0 (the old "every vCPU is a core" scaling), side by side, with the headline
   saving under each. The candidate with the lowest $ within the bound is picked again
   under each yield (the held-out check is the run's own, not repeated).

Writes bench/results/capacity.json. This machine's vCPUs show as cores with one thread
each (lscpu), so its 2-thread figure measures two cores, not a core's two hyperthreads.

Run: `.venv/bin/python bench/capacity.py [--run reports/<run-id>] [--rounds 3] [--seconds 3]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))
CONFIG = REPO / "search_spaces" / "digits.yaml"
YIELDS = {"smt_yield 1.0 (default: a hyperthread is not a core)": 1.0, "smt_yield 2.0 (old vCPU scaling)": 2.0}


def _models(recipe_json: dict) -> tuple[Any, dict[str, Any]]:
    """The demo task, its serving batch, and {name: model} for the teacher and the recommended recipe."""
    import torch

    from orchestrator.compress.recipe import Recipe, apply_recipe
    from orchestrator.config import load_config
    from orchestrator.tasks import load_task

    config = load_config(CONFIG)
    task = load_task(config.task.name, config.task.args)
    teacher = task.teacher()
    torch.set_num_threads(1)
    candidate = apply_recipe(task, Recipe.model_validate(recipe_json), device="cpu", teacher=teacher).model.eval()
    batch = task.example_batch(config.traffic.serving_batch_size)
    return batch, {"teacher": teacher.eval(), "recommended": candidate}


def _throughput(model: Any, batch: Any, threads: int, seconds: float) -> float:
    """Samples per second of back-to-back serving batches for `seconds` at `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    with torch.inference_mode():
        for _ in range(3):
            model(batch)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model(batch)
            done += batch.shape[0]
        return done / (time.perf_counter() - started)


def _worker(recipe_json: dict, conn: Any) -> None:
    """A 1-thread process holding both models; measures one on request and sends its samples/s back."""
    import warnings

    warnings.filterwarnings("ignore")
    batch, models = _models(recipe_json)
    conn.send("ready")
    while True:
        message = conn.recv()
        if message is None:
            return
        name, seconds = message
        conn.send(_throughput(models[name], batch, 1, seconds))


def measure(recipe_json: dict, rounds: int, seconds: float) -> dict[str, Any]:
    """Interleaved rounds of 1 thread, 2 threads and two concurrent 1-thread processes, for both models."""
    batch, models = _models(recipe_json)
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(2)]
    workers = [ctx.Process(target=_worker, args=(recipe_json, child)) for _, child in pipes]
    for process in workers:
        process.start()
    for parent, _ in pipes:
        assert parent.recv() == "ready"
    readings: dict[str, dict[str, list[float]]] = {n: {"1 thread": [], "2 threads": [], "2 × 1-thread processes": []} for n in models}
    try:
        for _ in range(rounds):
            for name, model in models.items():
                readings[name]["1 thread"].append(_throughput(model, batch, 1, seconds))
                readings[name]["2 threads"].append(_throughput(model, batch, 2, seconds))
                for parent, _ in pipes:
                    parent.send((name, seconds))
                readings[name]["2 × 1-thread processes"].append(sum(parent.recv() for parent, _ in pipes))
    finally:
        for parent, _ in pipes:
            parent.send(None)
        for process in workers:
            process.join(timeout=30)
    out: dict[str, Any] = {}
    for name, by_mode in readings.items():
        one = statistics.median(by_mode["1 thread"])
        out[name] = {
            mode: {"median_sps": round(statistics.median(values), 1), "readings_sps": [round(v, 1) for v in values],
                   "vs_1_thread": round(statistics.median(values) / one, 3)}
            for mode, values in by_mode.items()
        }  # fmt: skip
    return out


def _metrics(row: dict, record: dict, measured_instance_type: str | None) -> Any:
    """The cost model's input for one stored trial, from its trials.csv row and record."""
    from orchestrator.compress import StepRecord
    from orchestrator.cost.model import CandidateMetrics
    from orchestrator.runtimes import kernel_archs

    steps = [StepRecord.model_validate(s) for s in record.get("compression", {}).get("steps", [])]
    device = record["metrics"]["device"]
    flops = row.get("flops_per_sample")
    return CandidateMetrics(
        throughput_sps=row["throughput_sps"], batch_latency_p95_ms=row["batch_latency_p95_ms"],
        peak_mem_bytes=int(row["peak_mem_bytes"]), size_bytes=int(row["size_bytes"]), device_kind=device["kind"],
        device_name=device["name"], cpu_threads=int(row["threads"]), cpu_arch=device["arch"], bits=int(row["bits"]),
        flops_per_sample=None if flops is None or flops != flops else float(flops), measured_instance_type=measured_instance_type,
        cpu_archs=kernel_archs(steps),
    )  # fmt: skip


def price_under_yields(run: Path) -> dict[str, Any]:
    """The run's recommendation and baseline, and the cheapest candidate within the bound, under each yield."""
    import pandas as pd

    from orchestrator.config import load_config
    from orchestrator.cost.catalog import load_catalog
    from orchestrator.cost.model import price_candidate

    config = load_config(run / "config.yaml")
    catalog_path = None if config.deployment.catalog == "bundled" else config.deployment.catalog
    catalog = load_catalog(catalog_path, region=config.deployment.region, instance_filter=config.deployment.instance_filter)
    summary = json.loads((run / "summary.json").read_text())
    frame = pd.read_csv(run / "trials.csv", dtype={"trial_id": str, "recipe_key": str})
    frame = frame[frame["status"] == "finished"]
    rec_id, base = summary["recommended"]["trial_id"], frame[frame["baseline"].astype(bool)].iloc[0]
    bound = config.objective.max_quality_drop
    out: dict[str, Any] = {}
    for label, smt_yield in YIELDS.items():
        priced = {}
        for _, row in frame.iterrows():
            record = json.loads((run / "trials" / f"{row['recipe_key']}.json").read_text())
            cost = price_candidate(_metrics(row.to_dict(), record, config.deployment.measured_instance_type),
                                   config.traffic, catalog, smt_yield=smt_yield)  # fmt: skip
            priced[row["trial_id"]] = {"instance_type": cost.instance_type, "replicas": cost.replicas,
                                       "monthly_usd": cost.monthly_usd, "feasible": cost.feasible,
                                       "accuracy_drop": float(row["accuracy_drop"])}  # fmt: skip
        within = {t: p for t, p in priced.items() if p["feasible"] and p["accuracy_drop"] <= bound + 1e-12}
        cheapest = min(within, key=lambda t: (within[t]["monthly_usd"], within[t]["accuracy_drop"], t)) if within else None
        base_usd = priced[base["trial_id"]]["monthly_usd"]
        rec_usd = priced[rec_id]["monthly_usd"]
        out[label] = {
            "smt_yield": smt_yield,
            "demo_recommendation": {"trial_id": rec_id, **priced[rec_id]},
            "baseline": {"trial_id": base["trial_id"], **priced[base["trial_id"]]},
            "saving_ratio": round(1 - rec_usd / base_usd, 4) if base_usd and rec_usd else None,
            "times_cheaper": round(base_usd / rec_usd, 2) if base_usd and rec_usd else None,
            "cheapest_within_bound": {"trial_id": cheapest, **within[cheapest]} if cheapest else None,
        }
    return out


def _run_demo() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="hedgerow-capacity-"))
    done = subprocess.run([sys.executable, "-m", "orchestrator", "search", str(CONFIG), "--out", str(folder)],
                          cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from _common import machine, write

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished demo run folder (default: run the demo search now)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    started = time.perf_counter()
    run = args.run.resolve() if args.run else _run_demo()
    summary = json.loads((run / "summary.json").read_text())
    rec_id = summary["recommended"]["trial_id"]
    import pandas as pd

    frame = pd.read_csv(run / "trials.csv", dtype={"trial_id": str, "recipe_key": str})
    record_key = frame.loc[frame["trial_id"] == rec_id, "recipe_key"].item()
    recipe = json.loads((run / "trials" / f"{record_key}.json").read_text())["recipe"]
    payload = {
        "benchmark": "capacity",
        "run": run.name,
        "recommended_recipe": recipe,
        "throughput": measure(recipe, args.rounds, args.seconds),
        "pricing": price_under_yields(run),
        "setup": (f"interleaved rounds ({args.rounds}) of {args.seconds:g} s readings at the demo's serving batch: 1 thread "
                  "and 2 threads in this process, and two spawned 1-thread processes measuring at once (summed)"),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    print(write("capacity", payload))


if __name__ == "__main__":
    main()
