"""Decoder-LLM benchmark: SmolLM2-135M-Instruct quantized, pruned in depth and width, and distilled.

On the built-in `smollm2` task, each variant is built with the product's own steps (`apply_recipe`) and judged
as the field judges an LLM: **perplexity on the test split** (64 windows of 256 tokens of Python's documentation,
disjoint from the distillation text), with the **paired** 95% interval of its increase against the teacher (per
window, on the same windows), read as a relative perplexity change (exp(Δ log-perplexity) − 1). Beside it: KL per
token to the teacher over its top-64 tokens and top-1 agreement (diagnostics), params and weight bytes, and decode
speed measured as a trial measures it (measure/generation.py: prompt 200 tokens, output 100, static batching with a
KV cache), in rounds interleaved with the teacher: output tokens/s at concurrency 1 and at the best concurrency
measured, each as a ratio to the teacher.

Rows: teacher; int8 weight-only; int4 weight-only at group sizes 32 and 64 (576, the hidden size, is no multiple of 128); int8 with dynamic activations (W8A8,
the mode that fails this model); depth −4 and −8 (block influence) without and with distillation; FFN −25%.
`teacher_again` is the teacher timed as a second model: its ratio is the noise.

Published anchors (llama.cpp's perplexity table on Llama-3-8B; ShortGPT) are written beside the figures.

Run: `.venv/bin/python bench/llm.py [--threads 2] [--kd-steps 100] [--rounds 2] [--concurrency 1,4,8]`;
`--quick` runs a tiny random Llama on a few windows and prints its JSON, writing nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, write  # noqa: E402
from orchestrator.compress.recipe import Recipe, apply_recipe  # noqa: E402
from orchestrator.measure.generation import measure_generation  # noqa: E402
from orchestrator.tasks import load_task  # noqa: E402
from orchestrator.tasks.base import paired_drop  # noqa: E402

ANCHORS = {
    "llama.cpp perplexity, Llama-3-8B (wikitext-2)": {"Q8_0": "+0.04%", "Q6_K": "+0.35%", "Q4_K_M": "+2.8%", "Q4_0": "+7.5%"},
    "ShortGPT (Men et al. 2024)": "removing ~25% of the layers by block influence keeps ~92% of benchmark performance",
    "NNCF on sub-1B models": "small models lose more to int4 than 7B ones (stablelm-2-1.6b int4 data-free: ppl 6.30 -> 8.65)",
}


def variants(kd_steps: int) -> dict[str, dict]:
    """The recipes measured, by row name (knob values; everything else at the teacher's)."""
    kd = dict(kd_steps=kd_steps, kd_batch_size=4, kd_learning_rate=1e-4, kd_temperature=1.0, kd_alpha=0.9)
    return {
        "teacher": {},
        "int8_weight_only": dict(bits=8, int8_activations="float"),
        "int8_dynamic": dict(bits=8, int8_activations="dynamic"),
        "int4_g32": dict(bits=4, int4_group_size=32),
        "int4_g64": dict(bits=4, int4_group_size=64),
        "depth_minus_4": dict(drop_layers=4),
        "depth_minus_4_kd": dict(drop_layers=4, **kd),
        "depth_minus_8": dict(drop_layers=8),
        "depth_minus_8_kd": dict(drop_layers=8, **kd),
        "ffn_minus_25": dict(prune_ffn_ratio=0.25),
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    if args.quick:
        import tempfile

        from tests.llm_models import tiny_llm_folder, write_text

        root = Path(tempfile.mkdtemp())
        task = load_task("examples.hf_causal_lm_task:make_task", {
            "model_path": str(tiny_llm_folder(root / "m", layers=12)), "text_file": str(write_text(root / "t.txt", 3)),
            "window_tokens": 32, "train_window_tokens": 16, "n_val": 4, "n_test": 6, "n_train": 16, "top_k": 8,
        })  # fmt: skip
        prompt, output = 16, 8
    else:
        task = load_task("smollm2", {})
        prompt, output = 200, 100
    teacher = task.teacher()
    base = task.evaluate_items(teacher, "test")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    rows: dict[str, dict] = {}
    built_shapes: dict[str, str] = {}
    for name, knobs in variants(args.kd_steps if not args.quick else 5).items():
        started = time.perf_counter()
        if not knobs:
            model = teacher
            record_size = None
        else:
            compressed = apply_recipe(task, Recipe(**knobs), device=torch.device("cpu"), teacher=teacher, serving_batch_size=1)
            model, record_size = compressed.model, compressed.record.deployed_size_bytes
        build_s = time.perf_counter() - started
        evaluation = task.evaluate_items(model, "test")
        drop, low, high = paired_drop(base.items, evaluation.items, higher_is_better=False)
        row = {
            "knobs": knobs,
            "test_log_perplexity": evaluation.quality["value"],
            "test_perplexity": math.exp(evaluation.quality["value"]),
            "perplexity_increase": math.expm1(drop),
            "perplexity_increase_ci95": [math.expm1(low), math.expm1(high)],
            "within_5_percent": math.expm1(high) <= 0.05,
            **evaluation.diagnostics,
            "weight_bytes": record_size,
            "build_seconds": round(build_s, 1),
        }
        # A distilled variant has its undistilled twin's shape and kernels: timed once, as that twin.
        twin = name.removesuffix("_kd")
        if twin != name and twin in rows:
            row["speed"] = rows[twin]["speed"]
            row["speed_note"] = f"timed as {twin} (same shape)"
        else:
            speed = measure_generation(
                model, prompt, output, concurrency, args.threads, reference=teacher if knobs else copy.deepcopy(teacher),
                rounds=args.rounds,
            )  # fmt: skip
            points = {p.concurrency: p for p in speed.points}
            best = max(speed.points, key=lambda p: p.output_tokens_per_s)
            row["speed"] = {
                "decode_ratio_to_teacher_c1": points[min(points)].output_tokens_ratio_to_reference,
                "decode_tokens_per_s_c1": points[min(points)].output_tokens_per_s,
                "best_concurrency": best.concurrency,
                "decode_tokens_per_s_best": best.output_tokens_per_s,
                "decode_ratio_to_teacher_best": best.output_tokens_ratio_to_reference,
                "ratio_rounds_c1": points[min(points)].output_tokens_ratio_rounds,
                "weight_bytes": speed.weight_bytes,
                "measure_seconds": speed.measure_seconds,
            }
            if row["weight_bytes"] is None:
                row["weight_bytes"] = speed.weight_bytes
        rows[name] = row
        built_shapes[name] = json.dumps(knobs)
        print(f"[bench/llm] {name}: ppl {row['test_perplexity']:.2f} ({row['perplexity_increase']:+.1%}, CI "
              f"{row['perplexity_increase_ci95'][0]:+.1%}..{row['perplexity_increase_ci95'][1]:+.1%}), decode ×"
              f"{row['speed']['decode_ratio_to_teacher_c1']:.2f} at c=1", file=sys.stderr, flush=True)  # fmt: skip
    return {
        "machine": machine(),
        "settings": {"threads": args.threads, "prompt_tokens": prompt, "output_tokens": output, "concurrency": concurrency,
                     "rounds": args.rounds, "kd_steps": args.kd_steps, "test_windows": len(base.items),
                     "teacher_cache_bytes": task.cache_bytes()},  # fmt: skip
        "teacher_test_perplexity": math.exp(base.quality["value"]),
        "rows": rows,
        "anchors": ANCHORS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kd-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    payload = run(args)
    if args.quick:
        print(json.dumps(payload, indent=1, default=str))
        return
    print(write("llm", payload))


if __name__ == "__main__":
    main()
