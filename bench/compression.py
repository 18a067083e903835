"""Compression benchmark on digits: each technique against the teacher, measured in interleaved rounds.

Writes bench/results/compression.json. Run: `make bench` or `.venv/bin/python bench/compression.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from _common import machine, write  # noqa: E402

from orchestrator.compress import Recipe, apply_recipe  # noqa: E402
from orchestrator.measure import interleaved_throughput, measure  # noqa: E402
from orchestrator.tasks import load_task  # noqa: E402

CUDA_VARIANTS: dict[str, Recipe] = {
    "teacher": Recipe(),
    "teacher_again": Recipe(),
    "structured_50": Recipe(prune_method="structured", prune_ratio=0.5),
    "fp16": Recipe(bits=16),
    "int8_torchao": Recipe(bits=8),
    "int4_torchao": Recipe(bits=4),
    "semi_structured_2_4_fp16": Recipe(prune_method="semi_structured_2_4", bits=16),
    "structured_50_kd300_fp16": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=300, bits=16),
}
VARIANTS: dict[str, Recipe] = {
    "teacher": Recipe(),
    "teacher_again": Recipe(),
    "structured_50": Recipe(prune_method="structured", prune_ratio=0.5),
    "unstructured_80": Recipe(prune_method="unstructured", prune_ratio=0.8),
    "bf16": Recipe(bits=16),
    "int8": Recipe(bits=8),
    "int4": Recipe(bits=4),
    "structured_50_kd300_int8": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=300, bits=8),
    "structured_70": Recipe(prune_method="structured", prune_ratio=0.7),
    "structured_70_kd300": Recipe(prune_method="structured", prune_ratio=0.7, kd_steps=300),
}


def run(serving_batch: int, rounds: int, threads: int, device: str = "cpu") -> dict:
    """Compress every variant, measure each, then compare throughput against the teacher in rounds."""
    torch.set_num_threads(threads)
    task = load_task("digits")
    teacher = task.teacher()
    batch = task.example_batch(serving_batch)
    models, rows = {}, {}
    for name, recipe in (CUDA_VARIANTS if device == "cuda" else VARIANTS).items():
        compressed = apply_recipe(task, recipe, device=device, teacher=teacher)
        models[name] = compressed.model
        metrics = measure(compressed.model, batch, threads=threads, size_bytes=compressed.record.deployed_size_bytes)
        rows[name] = {
            "recipe": recipe.model_dump(exclude_defaults=True),
            "val_accuracy": task.evaluate(compressed.model, "val")["value"],
            "test_accuracy": task.evaluate(compressed.model, "test")["value"],
            "params": metrics.params,
            "nonzero_params": metrics.nonzero_params,
            "size_bytes": metrics.size_bytes,
            "sparse_size_bytes": compressed.record.sparse_size_bytes,
            "peak_mem_bytes": metrics.peak_mem_bytes,
            "latency_p50_ms": round(metrics.latency_p50_ms, 4),
            "latency_p95_ms": round(metrics.latency_p95_ms, 4),
            "accelerated": compressed.record.accelerated,
            "fallbacks": compressed.record.fallbacks,
        }
    per_round = interleaved_throughput(models, batch, rounds=rounds)
    base = rows["teacher"]
    for name, row in rows.items():
        ratios = [r / t for r, t in zip(per_round[name], per_round["teacher"])]
        row.update(
            throughput_sps=round(statistics.median(per_round[name]), 1),
            throughput_rounds_sps=[round(v, 1) for v in per_round[name]],
            throughput_spread=round((max(per_round[name]) - min(per_round[name])) / statistics.median(per_round[name]), 3),
            throughput_ratio=round(statistics.median(ratios), 3),
            throughput_ratio_min=round(min(ratios), 3),
            throughput_ratio_max=round(max(ratios), 3),
            size_ratio=round(row["size_bytes"] / base["size_bytes"], 4),
            params_ratio=round(row["params"] / base["params"], 4),
            accuracy_drop=round(base["test_accuracy"] - row["test_accuracy"], 4),
        )
    return rows


def targets(rows: dict) -> dict:
    """The issue's targets (set for the CPU), each with the measured figure and whether it holds."""
    if "int8" not in rows:
        return {"note": "targets are set for the CPU; this run measured the CUDA paths"}
    t, s70, s70kd = rows["teacher"], rows["structured_70"], rows["structured_70_kd300"]
    lost = t["test_accuracy"] - s70["test_accuracy"]
    recovered = (s70kd["test_accuracy"] - s70["test_accuracy"]) / lost if lost > 0 else 1.0
    checks = {
        "int8_size_le_0.30": rows["int8"]["size_ratio"] <= 0.30,
        "int8_throughput_ge_3x": rows["int8"]["throughput_ratio"] >= 3.0,
        "int8_accuracy_within_1pt": rows["int8"]["accuracy_drop"] <= 0.01,
        "structured_50_throughput_ge_2.5x": rows["structured_50"]["throughput_ratio"] >= 2.5,
        "structured_50_params_le_0.30": rows["structured_50"]["params_ratio"] <= 0.30,
        "s50_kd_int8_accuracy_within_1.5pt": rows["structured_50_kd300_int8"]["accuracy_drop"] <= 0.015,
        "s50_kd_int8_size_le_0.10": rows["structured_50_kd300_int8"]["size_ratio"] <= 0.10,
        "s50_kd_int8_throughput_ge_6x": rows["structured_50_kd300_int8"]["throughput_ratio"] >= 6.0,
        "kd_after_s70_recovers_half": recovered >= 0.5,
        "same_model_twice_within_10pct": abs(rows["teacher_again"]["throughput_ratio"] - 1) <= 0.10,
    }
    return {"kd_after_s70_recovered_fraction": round(recovered, 3), "checks": checks, "all_met": all(checks.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serving-batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    rows = run(args.serving_batch, args.rounds, args.threads, args.device)
    payload = {
        "benchmark": "compression",
        "task": "digits",
        "serving_batch_size": args.serving_batch,
        "rounds": args.rounds,
        "threads": args.threads,
        "method": "throughput: each round times every model (median of 10 runs); ratios are per-round against the teacher, median over rounds",
        "device": args.device,
        "machine": machine(),
        "variants": rows,
        "targets": targets(rows),
    }
    if args.device == "cuda":
        from orchestrator.measure import device_info

        payload["gpu"] = device_info("cuda").model_dump()
    path = write("compression" if args.device == "cpu" else "compression_cuda", payload)
    for name, row in rows.items():
        print(f"{name:28s} acc {row['test_accuracy']:.4f}  size x{row['size_ratio']:.3f}  params x{row['params_ratio']:.3f}  thr x{row['throughput_ratio']:.2f} [{row['throughput_ratio_min']:.2f}-{row['throughput_ratio_max']:.2f}]")
    print(payload["targets"])
    print(path)


if __name__ == "__main__":
    main()
