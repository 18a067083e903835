"""bench/runtimes.py's figures from its measurements: ratio statistics, cold starts in fresh processes, the issue's
targets, and the printed table. Pure functions over the results dict, apart from the timing code."""

from __future__ import annotations

import statistics
from typing import Any

from orchestrator.runtimes import RUNTIMES

TARGET_INT8_SPEEDUP = 1.3
TARGET_ORT_FP32_SPEEDUP = 1.2
TARGET_INT8_DROP = 0.005
TARGET_OPENVINO_INT8_VS_ORT_INT8 = 1.5  # issue 22, item 5's target: OpenVINO int8 >= 1.5x ONNX Runtime int8, unpruned MiniLM


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float]:
    ratios = [a / b for a, b in zip(num, den)]
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3), "max": round(max(ratios), 3)}


def summarize_fresh(fresh: list[dict], results: dict[str, dict]) -> dict[str, dict]:
    """Per task:variant/runtime and inductor cache: fresh-process startup (median over processes), the second build's
    in that process, and this process's in-process figure."""
    summary: dict[str, dict] = {}
    for rec in fresh:
        key = f"{rec['task']}:{rec['variant']}/{rec['runtime']}"
        if rec["runtime"] == "compiled":
            key += f" ({rec['inductor_cache']} inductor cache)"
        entry = summary.setdefault(key, {"first_build_startup_s": [], "second_build_startup_s": [], "process_wall_s": [], "errors": 0,
                                         "_row": (rec["task"], f"{rec['variant']}/{rec['runtime']}")})  # fmt: skip
        if "error" in rec:
            entry["errors"] += 1
            continue
        entry["first_build_startup_s"].append(rec["first_build"]["startup_seconds"])
        entry["second_build_startup_s"].append(rec["second_build"]["startup_seconds"])
        entry["process_wall_s"].append(rec["process_wall_seconds"])
    for entry in summary.values():
        task_name, name = entry.pop("_row")
        for field in ("first_build_startup_s", "second_build_startup_s", "process_wall_s"):
            entry[f"{field}_median"] = round(statistics.median(entry[field]), 3) if entry[field] else None
        row = results.get(task_name, {}).get("models", {}).get(name, {})
        entry["in_process_startup_s"] = row.get("startup_seconds_in_process")
        entry["in_process_build_order"] = row.get("build_order")
    return summary


def targets(results: dict[str, dict]) -> dict:
    out: dict[str, Any] = {}
    digits = results.get("digits")
    if digits is None:
        return {"note": "digits was not run"}
    rows, per_round = digits["models"], digits["_per_round"]

    def pair(a: str, b: str) -> dict | None:
        return ratio_stats(per_round[a], per_round[b]) if a in per_round and b in per_round else None

    # (a) best runtime for structured 50% + int8 against eager int8 (torch.ao FX static)
    by_runtime = {rt: pair(f"pruned50_int8/{rt}", "pruned50_int8/eager") for rt in RUNTIMES if rt != "eager"}
    measured = {rt: r for rt, r in by_runtime.items() if r is not None}
    best = max(measured, key=lambda rt: measured[rt]["median"]) if measured else None
    out["a_int8_runtime_ge_1.3x_eager_int8"] = {
        "target": f"the best runtime's structured 50% + int8 >= {TARGET_INT8_SPEEDUP}x the throughput of eager int8 (same candidate), digits",
        "eager_int8_technique": rows.get("pruned50_int8/eager", {}).get("quantize"),
        "ratio_by_runtime": by_runtime,
        "best_runtime": best,
        "value": measured[best]["median"] if best else None,
        "met": bool(best and measured[best]["median"] >= TARGET_INT8_SPEEDUP),
    }
    # (b) ONNX Runtime fp32 of structured 50% against its eager throughput
    b = pair("pruned50/onnxruntime", "pruned50/eager")
    out["b_onnxruntime_fp32_ge_1.2x_eager"] = {
        "target": f"ONNX Runtime fp32 of the structured 50% model >= {TARGET_ORT_FP32_SPEEDUP}x its eager throughput, digits",
        "ratio": b,
        "value": b["median"] if b else None,
        "met": bool(b and b["median"] >= TARGET_ORT_FP32_SPEEDUP),
    }
    # (c) every runtime's int8 within 0.005 of the fp32 structured 50% model's val accuracy
    fp32 = rows.get("pruned50/eager", {}).get("val_accuracy")
    per_rt = {}
    for rt in (rt for rt in RUNTIMES if f"pruned50_int8/{rt}" in rows):  # the runtimes this run built (--runtimes)
        r8 = rows.get(f"pruned50_int8/{rt}", {})
        own = rows.get(f"pruned50/{rt}", {}).get("val_accuracy")
        acc = r8.get("val_accuracy")
        per_rt[rt] = {
            "int8_val_accuracy": acc,
            "fp32_val_accuracy_same_runtime": own,
            "drop_vs_fp32_eager": round(fp32 - acc, 5) if acc is not None and fp32 is not None else None,
            "drop_vs_fp32_same_runtime": round(own - acc, 5) if acc is not None and own is not None else None,
        }
        per_rt[rt]["met"] = per_rt[rt]["drop_vs_fp32_eager"] is not None and per_rt[rt]["drop_vs_fp32_eager"] <= TARGET_INT8_DROP + 1e-12
    worst = max((v["drop_vs_fp32_eager"] for v in per_rt.values() if v["drop_vs_fp32_eager"] is not None), default=None)
    out["c_int8_within_0.005_of_fp32"] = {
        "target": f"every runtime's structured 50% + int8 val accuracy >= the fp32 structured 50% model's (eager) - {TARGET_INT8_DROP}, digits "
                  "(a drop; int8 above fp32 passes). Val has 359 examples: one example is 0.00279, so the bound allows one lost, not two",
        "fp32_pruned50_val_accuracy": fp32,
        "by_runtime": per_rt,
        "value": worst,
        "met": all(v["met"] for v in per_rt.values()),
    }  # fmt: skip
    minilm = results.get("minilm")
    if minilm is not None:
        m = minilm["models"]
        info = {}
        for rt in RUNTIMES:
            f8, f32 = m.get(f"int8/{rt}", {}).get("val_fidelity"), m.get(f"fp32/{rt}", {}).get("val_fidelity")
            info[rt] = {"int8_val_fidelity": f8, "fp32_val_fidelity": f32,
                        "drop_vs_teacher": round(1.0 - f8, 5) if f8 is not None else None,
                        "drop_vs_fp32_same_runtime": round(f32 - f8, 5) if f8 is not None and f32 is not None else None}  # fmt: skip
        out["c_minilm_int8_fidelity_drop"] = {"note": "reported, not part of `met` (the target is set on digits accuracy)", "by_runtime": info}
        mp = minilm["_per_round"]
        out["minilm_speedups_info"] = {
            "note": "the same comparisons on MiniLM, reported only",
            "int8_vs_eager_int8": {rt: ratio_stats(mp[f"int8/{rt}"], mp["int8/eager"]) for rt in RUNTIMES
                                   if rt != "eager" and f"int8/{rt}" in mp and "int8/eager" in mp},
            "fp32_vs_eager_fp32": {rt: ratio_stats(mp[f"fp32/{rt}"], mp["fp32/eager"]) for rt in RUNTIMES
                                   if rt != "eager" and f"fp32/{rt}" in mp},
        }  # fmt: skip
    out["met"] = all(out[k]["met"] for k in ("a_int8_runtime_ge_1.3x_eager_int8", "b_onnxruntime_fp32_ge_1.2x_eager", "c_int8_within_0.005_of_fp32"))
    return out


def openvino_target(results: dict[str, dict]) -> dict:
    """Issue 22's OpenVINO target on the unpruned MiniLM: OpenVINO int8 against ONNX Runtime int8, timed in the same rounds.

    The bound is 1 point of nDCG@10 below the teacher; until the task measures labeled quality, val fidelity (cosine to
    the teacher's embeddings) and its drop are recorded instead, and `met` says only whether the throughput half holds.
    """
    minilm = results.get("minilm")
    key = "d_openvino_int8_ge_1.5x_onnxruntime_int8"
    if minilm is None:
        return {key: {"note": "minilm was not run", "met": None}}
    rows, per_round = minilm["models"], minilm["_per_round"]
    have = all(name in per_round for name in ("int8/openvino", "int8/onnxruntime"))
    ratio = ratio_stats(per_round["int8/openvino"], per_round["int8/onnxruntime"]) if have else None
    fp32 = ratio_stats(per_round["fp32/openvino"], per_round["fp32/onnxruntime"]) if {"fp32/openvino", "fp32/onnxruntime"} <= set(per_round) else None
    quality = {
        name: {"val_fidelity": rows.get(name, {}).get("val_fidelity"),
               "val_fidelity_drop_vs_teacher": rows.get(name, {}).get("val_fidelity_drop_vs_teacher"),
               "error": rows.get(name, {}).get("error")}
        for name in ("int8/openvino", "int8/onnxruntime", "fp32/openvino")
    }  # fmt: skip
    return {key: {
        "target": f"OpenVINO int8 (NNCF) of the unpruned MiniLM >= {TARGET_OPENVINO_INT8_VS_ORT_INT8}x ONNX Runtime int8's "
                  "throughput, interleaved, at <= 1 point nDCG@10 below the teacher",
        "ratio_openvino_int8_to_onnxruntime_int8": ratio,
        "ratio_openvino_fp32_to_onnxruntime_fp32": fp32,
        "quality": quality,
        "quality_note": "nDCG@10 on labels is not measured by this task yet: val fidelity (and its drop from the teacher's "
                        "1.0) is recorded in its place; the quality half of the target is open",
        "value": ratio["median"] if ratio else None,
        "met": bool(ratio and ratio["median"] >= TARGET_OPENVINO_INT8_VS_ORT_INT8),
    }}  # fmt: skip


def print_table(results: dict[str, dict]) -> None:
    for task_name, res in results.items():
        q = "accuracy" if task_name == "digits" else "fidelity"
        print(f"\n{task_name} (batch {res['serving_batch']}):")
        for name, row in res["models"].items():
            if "error" in row:
                print(f"  {name:24s} ERROR {row['error'][:120]}")
                continue
            r = row["ratio_to_eager_fp32_teacher"]
            same = row.get("ratio_to_eager_same_candidate")
            val = f"{row[f'val_{q}']:.4f}" if f"val_{q}" in row else "  -   "
            print(f"  {name:24s} val {q} {val}  thr x{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}] "
                  f"{row['throughput_sps']:9.1f} sps" + (f"  vs eager x{same['median']:.2f}" if same else "")
                  + (f"  startup {row['startup_seconds_in_process']:.3f} s  size {row['size_bytes']:,}  build {row['build_seconds']:.1f} s"
                     if "size_bytes" in row else ""))  # fmt: skip
