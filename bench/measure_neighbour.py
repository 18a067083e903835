"""Does a concurrent trial move a candidate's ratio to the teacher? The same recipe measured 2.56x and 3.24x in two
MiniLM searches.

`make demo-minilm` runs two trials at once, one core each. While one trial times its candidate against the
teacher (interleaved rounds), the other may be distilling. This benchmark reproduces that on one machine:
a measuring process builds MiniLM int8 on ONNX Runtime (search_spaces/minilm.yaml's task, settings and threads)
and measures it as a trial does, `--measurements` times one after another; in the `neighbour` condition another
process distills MiniLM (kd batch 16, as the demo's trials do) on the other core the whole time.

Reported per condition: every measurement's ratio to the teacher, their median and largest deviation from it,
and the median's deviation from `alone`. Writes bench/results/measure_neighbour.json.

Run: `.venv/bin/python bench/measure_neighbour.py [--measurements 4]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
CONFIG = REPO / "search_spaces" / "minilm.yaml"
MARK = "MEASURE_NEIGHBOUR_JSON "


def _prepared():
    import torch

    from orchestrator.config import load_config
    from orchestrator.search.runner import prepare

    config = load_config(CONFIG)
    prepared = prepare(config)
    threads = max(1, int(config.search.resources_per_trial.cpu))
    torch.set_num_threads(threads)
    return config, prepared, threads


def measurer(measurements: int) -> None:
    """Build MiniLM int8 on ONNX Runtime and measure it against the teacher `measurements` times, as a trial does."""
    from orchestrator.compress import Recipe, apply_recipe
    from orchestrator.search.trial import measure_candidate

    config, prepared, threads = _prepared()
    task = prepared.task
    teacher = task.teacher()
    batch = task.example_batch(config.traffic.serving_batch_size)
    compressed = apply_recipe(task, Recipe(bits=8, runtime="onnxruntime"), teacher=teacher)
    print("READY", flush=True)
    ratios, seconds = [], []
    for _ in range(measurements):
        started = time.perf_counter()
        measured = measure_candidate(compressed, teacher, batch, config.search, threads, Path(tempfile.mkdtemp()))
        ratios.append(measured.metrics.throughput_ratio_to_reference)
        seconds.append(round(time.perf_counter() - started, 2))
    print(MARK + json.dumps({"ratios": ratios, "seconds": seconds, "threads": threads}), flush=True)


def neighbour() -> None:
    """Distill MiniLM for as long as it lives, one step at a time, as a concurrent trial does."""
    from orchestrator.compress import Recipe, apply_recipe

    config, prepared, _ = _prepared()
    task = prepared.task
    print("READY", flush=True)
    apply_recipe(task, Recipe(kd_steps=100_000, kd_batch_size=16, kd_learning_rate=1e-4), teacher=task.teacher())


def _start(role: str, extra: list[str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--role", role, *(extra or [])], cwd=REPO, stdout=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.startswith("READY"):
            return
    raise SystemExit(f"{proc.args} ended before it was ready (exit {proc.wait()})")


def condition(name: str, measurements: int) -> dict:
    """One condition in fresh processes: the measurer's ratios, with the neighbour it names."""
    other = None
    if name != "alone":
        other = _start("neighbour")
        _wait_ready(other)
    proc = _start("measurer", ["--measurements", str(measurements)])
    try:
        out = proc.communicate(timeout=1800)[0]
    finally:
        if other is not None:
            other.kill()
            other.wait()
    line = next((ln for ln in out.splitlines() if ln.startswith(MARK)), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{name}: the measurer failed (exit {proc.returncode})")
    got = json.loads(line[len(MARK):])
    med = statistics.median(got["ratios"])
    got.update(
        median_ratio=round(med, 4),
        max_deviation_from_median=round(max(abs(r - med) for r in got["ratios"]) / med, 4),
        ratios=[round(r, 4) for r in got["ratios"]],
    )
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measurements", type=int, default=4)
    parser.add_argument("--conditions", default="alone,neighbour")
    parser.add_argument("--role", choices=["measurer", "neighbour"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "measurer":
        measurer(args.measurements)
        return
    if args.role == "neighbour":
        neighbour()
        return
    from _common import machine, write

    started = time.perf_counter()
    results = {name: condition(name, args.measurements) for name in args.conditions.split(",")}
    alone = results.get("alone", {}).get("median_ratio")
    for got in results.values():
        if alone:
            got["median_deviation_from_alone"] = round(got["median_ratio"] / alone - 1, 4)
    payload = {
        "machine": machine(),
        "config": str(CONFIG.relative_to(REPO)),
        "recipe": "int8 on onnxruntime",
        "measurements_per_condition": args.measurements,
        "conditions": results,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(payload["conditions"], indent=2))
    print(write("measure_neighbour", payload))


if __name__ == "__main__":
    main()
