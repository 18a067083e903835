"""ONNX Runtime dynamic int8 on x86 CPUs with and without VNNI: max |Δ| to float and task quality, per weight setting.

An int8 program exported on one CPU is served on another, and ONNX Runtime picks its int8 kernel from the CPU it
runs on: u8s8 kernels on x86 without VNNI (AVX2) add pairs of u8×s8 products in int16 with saturation
(`vpmaddubsw`), which a full-range int8 weight can overflow. Each program is run here natively and under
qemu-user emulating an AVX2-only x86 CPU (`-cpu Haswell`: no AVX-512, no VNNI; ONNX Runtime reads the emulated
CPUID and takes its AVX2 paths), so one machine measures both kinds. Settings: int8 weights (today), int8 weights
with `reduce_range` (7-bit), and uint8 weights (u8u8). Throughput of each setting is timed natively only
(emulation says nothing about speed), in interleaved rounds.

    .venv/bin/python bench/ort_int8_cpus.py          # → bench/results/ort_int8_cpus.json (needs qemu-user)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, write  # noqa: E402
from orchestrator.compress import Recipe, apply_recipe  # noqa: E402
from orchestrator.runtimes.onnx import OnnxModule, export_onnx, feeds  # noqa: E402

SETTINGS = {
    "int8 weights (s8)": {"weight_type": "QInt8", "reduce_range": False},
    "int8 weights, reduce_range (7-bit)": {"weight_type": "QInt8", "reduce_range": True},
    "uint8 weights (u8u8)": {"weight_type": "QUInt8", "reduce_range": False},
}
AVX2_CPU = "Haswell"  # qemu's model of an AVX2 x86 CPU without AVX-512 or VNNI

# Runs inside the emulated CPU: only numpy and onnxruntime, one program over every saved input batch.
_CHILD = r"""
import sys, numpy as np, onnxruntime as ort
from numpy._core._multiarray_umath import __cpu_features__ as cpu
model, inputs, out = sys.argv[1:4]
data = np.load(inputs)
batches = sorted({k.split("/")[0] for k in data.files}, key=int)
options = ort.SessionOptions(); options.intra_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
outputs = [session.run(None, {k.split("/")[1]: data[k] for k in data.files if k.split("/")[0] == b})[0] for b in batches]
np.save(out, np.concatenate(outputs))
print("AVX2", cpu["AVX2"], "AVX512F", cpu["AVX512F"], "AVX512VNNI", cpu["AVX512VNNI"])
"""


def quantize(source: Path, dest: Path, setting: dict) -> None:
    """ONNX Runtime's quantize_dynamic, per-channel, with the setting's weight type and range."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(dest), per_channel=True, reduce_range=setting["reduce_range"],
                     weight_type=getattr(QuantType, setting["weight_type"]))  # fmt: skip


def batches_of(task, inputs, size: int) -> list:
    """The split's inputs in serving batches (each batch trimmed as the task trims it)."""
    from orchestrator.tasks.batches import batch_size as batch_len, take

    n = batch_len(inputs)
    return [task.compact(take(inputs, slice(lo, min(lo + size, n)))) for lo in range(0, n, size)]


def run_native(path: Path, batches: list, input_names: list[str]) -> torch.Tensor:
    """The program's outputs on this CPU."""
    module = OnnxModule(path, threads=1)
    return torch.cat([torch.from_numpy(module.session.run(None, feeds(input_names, b))[0]) for b in batches])


def run_emulated(path: Path, batches: list, input_names: list[str], work: Path) -> tuple[torch.Tensor, str]:
    """The program's outputs on an emulated AVX2-only CPU, and the CPU features the child saw."""
    arrays = {f"{i}/{name}": array for i, b in enumerate(batches) for name, array in feeds(input_names, b).items()}
    np.savez(work / "inputs.npz", **arrays)
    script = work / "child.py"
    script.write_text(_CHILD)
    out = work / "outputs.npy"
    done = subprocess.run(["qemu-x86_64", "-cpu", AVX2_CPU, sys.executable, str(script), str(path), str(work / "inputs.npz"), str(out)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return torch.from_numpy(np.load(out)), done.stdout.strip().splitlines()[-1]


def throughput(paths: dict[str, Path], batches: list, input_names: list[str], rounds: int) -> dict[str, dict]:
    """Samples/s of each program natively, interleaved rounds, 1 thread; median and range of the ratio to float."""
    modules = {name: OnnxModule(path, threads=1) for name, path in paths.items()}
    n = sum(len(next(iter(feeds(input_names, b).values()))) for b in batches)
    rates: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(rounds):
        for name, module in modules.items():
            started = time.perf_counter()
            for b in batches:
                module.session.run(None, feeds(input_names, b))
            rates[name].append(n / (time.perf_counter() - started))
    ratios = {name: [r / f for r, f in zip(rates[name], rates["float32"])] for name in rates}
    return {
        name: {"median_sps": float(np.median(rates[name])), "x_float_median": float(np.median(ratios[name])),
               "x_float_range": [float(min(ratios[name])), float(max(ratios[name]))]}  # fmt: skip
        for name in rates
    }


def cases() -> dict:
    """(task, float model, split inputs, targets, serving batch) per model measured."""
    from tests.tasks.named_inputs_task import NamedInputsTask

    from orchestrator.tasks import load_task

    named = NamedInputsTask()
    pruned = apply_recipe(named, Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=5)).model
    out = {"named-inputs MLP (structured 50% + 5 KD steps)": (named, pruned, 64)}
    # The test suite's size: emulation runs MiniLM ~100x slower than the CPU, and the saturation shows on any input.
    minilm = load_task("minilm", {"seq_len": 32, "n_train": 128, "n_val_passages": 60, "n_val_queries": 16,
                                  "n_test_passages": 60, "n_test_queries": 16})  # fmt: skip
    out["all-MiniLM-L6-v2 (teacher)"] = (minilm, minilm.teacher(), 32)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("qemu-x86_64") is None:
        sys.exit("bench/ort_int8_cpus.py needs qemu-user (apt-get install qemu-user) to emulate an AVX2-only CPU")
    torch.set_num_threads(2)
    figures = {}
    for label, (task, model, batch_size) in cases().items():
        inputs, targets = task.data("val")
        batches = batches_of(task, inputs, batch_size)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            export_onnx(model, task.example_batch(4), work / "float.onnx", task.sequence_inputs)
            import onnx

            input_names = [i.name for i in onnx.load(str(work / "float.onnx"), load_external_data=False).graph.input]
            paths = {"float32": work / "float.onnx"}
            for name, setting in SETTINGS.items():
                paths[name] = work / f"{setting['weight_type']}{'_rr' if setting['reduce_range'] else ''}.onnx"
                quantize(paths["float32"], paths[name], setting)
            reference = run_native(paths["float32"], batches, input_names)
            teacher_quality = task.quality_of(reference, targets, "val")
            rows = {}
            for name, path in paths.items():
                rows[name] = {}
                for cpu, (outputs, seen) in {
                    "native": (run_native(path, batches, input_names), "this machine"),
                    "emulated AVX2 (no VNNI)": run_emulated(path, batches, input_names, work),
                }.items():
                    value, low, high = task.quality_of(outputs, targets, "val")
                    rows[name][cpu] = {
                        "cpu_features": seen,
                        "max_abs_diff_to_float": float((outputs - reference).abs().max()),
                        "argmax_agreement": float((outputs.argmax(1) == reference.argmax(1)).float().mean()) if task.metric == "accuracy" else None,
                        "cosine_min": float(torch.nn.functional.cosine_similarity(outputs, reference).min()),
                        "quality": {"metric": task.metric, "value": value, "ci95": [low, high]},
                    }  # fmt: skip
                    print(f"{label} · {name} · {cpu}: max|Δ| {rows[name][cpu]['max_abs_diff_to_float']:.4g}, "
                          f"{task.metric} {value:.4f}", flush=True)  # fmt: skip
            speed = throughput(paths, batches, input_names, args.rounds)
            figures[label] = {"teacher_quality_native_float": teacher_quality, "settings": rows, "throughput_native_1_thread": speed}
    path = write("ort_int8_cpus", {
        "machine": machine(), "emulated_cpu": f"qemu-x86_64 -cpu {AVX2_CPU} (AVX2, no AVX-512, no VNNI)",
        "settings": SETTINGS, "rounds": args.rounds, "results": figures,
    })  # fmt: skip
    print(json.dumps({k: {s: {c: v["max_abs_diff_to_float"] for c, v in r.items()} for s, r in f["settings"].items()} for k, f in figures.items()}, indent=1))
    print(path)


if __name__ == "__main__":
    main()
