"""MiniLM benchmark: all-MiniLM-L6-v2 compressed by int8 (on each runtime), depth, FFN width and distillation.

On the built-in `minilm` task (the pretrained encoder on Python-docs paragraphs), each
variant is built with the product's own steps (`apply_recipe`) and judged as users judge a
retrieval model: **ground-truth nDCG@10 on the test split** (500 inverse-cloze queries among
2,000 passages, disjoint from the distillation text), with its bootstrap 95% interval and
the **paired** interval of its drop against the teacher (per query, on the same queries).
recall@10, MRR@10 and agreement with the teacher (agreement@10, fidelity) are recorded as
diagnostics. Params, serialized size and throughput at the serving batch (32 texts × 128
tokens), timed in interleaved rounds against the teacher: the per-round ratio to the teacher
is the figure to read. A distilled variant has its undistilled twin's shape, so it is timed once,
as that twin. `teacher_again` is the teacher timed as a second model: its ratio is the noise.

Rows: teacher; int8 on eager torch, ONNX Runtime and OpenVINO (NNCF); layers4, layers3 and
ffn50 without distillation; and each of those distilled with each loss of `--kd-losses`
(cosine, mse, contrastive). The loss that recovers most nDCG@10 over the three shapes is the
one the demo's defaults should lean on (`loss_choice`). Targets on test, against the
teacher's nDCG@10: layers4 + KD within 1 point, layers3 + KD within 2, ffn50 + KD within 1 at
≥ 1.4× the teacher's throughput; OpenVINO int8 ≥ 1.5× ONNX Runtime int8, within 1 point.

`--search` (not run by default) instead runs search_spaces/minilm.yaml's search twice,
with `search.scheduler: none` and with `asha`, through the product's CLI, and records the
compute each spent (summed trial seconds, Tune's per-trial time, wall time) and the
final Pareto hypervolume of each (as bench/search_efficiency.py computes it, on one
reference point shared by both runs); it merges that into the existing minilm.json.
`--search-runs FOLDER…` compares finished run folders instead of running them (e.g. a
`make demo-minilm` run as the asha arm).

Run: `.venv/bin/python bench/minilm.py [--kd-steps N] [--kd-lr LR] [--kd-batch B] [--kd-losses cosine,mse,contrastive]
[--threads 2] [--batch 32] [--seq-len 128] [--rounds 7] [--repeats 5]`; `--quick` is a smoke run on tiny
sizes that prints its JSON and writes nothing; `--search [--search-trials 12]` the search comparison (with `--quick`: 2 trials each, printed only).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from _common import RESULTS, machine, write  # noqa: E402

from orchestrator.compress import Recipe, apply_recipe  # noqa: E402
from orchestrator.measure import count_params, interleaved_throughput, serialized_size_bytes  # noqa: E402
from orchestrator.tasks import load_task  # noqa: E402
from orchestrator.tasks.base import paired_drop  # noqa: E402

NAME = "minilm"
SEARCH_CONFIG = REPO / "search_spaces" / "minilm.yaml"
METRIC = "ndcg_at_10"
# Targets: (variant prefix, most nDCG@10 points lost on test, least throughput ratio to the teacher)
TARGETS = {"layers4": (0.01, None), "layers3": (0.02, None), "ffn50": (0.01, 1.4)}
TARGET_OPENVINO = {"max_drop": 0.01, "min_ratio_to_onnxruntime": 1.5}

# Defaults: the demo space's most expensive distillation (search_spaces/minilm.yaml: kd_steps 200 at batch 16).
KD_STEPS = 200
KD_LR = 3e-4
KD_BATCH = 16
KD_LOSSES = ("cosine", "mse", "contrastive")

QUICK_TASK = dict(n_train=128, n_val_passages=40, n_val_queries=8, n_test_passages=40, n_test_queries=8, progress_queries=4)
SHAPES = {"layers4": {"keep_layers": 4}, "layers3": {"keep_layers": 3}, "ffn50": {"prune_ffn_ratio": 0.5}}
INT8 = {"int8": "eager", "int8_onnxruntime": "onnxruntime", "int8_openvino": "openvino"}


def recipes(kd: dict[str, Any], losses: tuple[str, ...]) -> dict[str, Recipe]:
    """Every variant's recipe; `{shape}_kd_{loss}` is `{shape}` distilled with that loss."""
    out = {name: Recipe(bits=8, runtime=runtime) for name, runtime in INT8.items()}
    out.update({name: Recipe(**shape) for name, shape in SHAPES.items()})
    for loss in losses:
        out.update({f"{name}_kd_{loss}": Recipe(**shape, **kd, kd_loss=loss) for name, shape in SHAPES.items()})
    return out


def timed_as(name: str) -> str:
    """The variant whose throughput stands for `name`: a distilled model has its undistilled twin's shape."""
    return name.split("_kd_")[0]


def evaluate(task: Any, model: Any, teacher_items: torch.Tensor | None, seed: int) -> tuple[dict, torch.Tensor]:
    """nDCG@10 on test with its interval, the paired drop against the teacher, and the diagnostics."""
    ev = task.evaluate_items(model, "test")
    q = ev.quality
    out = {"ndcg_at_10": round(q["value"], 5), "ci95": [round(q["ci95_low"], 5), round(q["ci95_high"], 5)], "n_queries": q["n_examples"]}
    if teacher_items is not None:
        drop, low, high = paired_drop(teacher_items, ev.items, True, seed)
        out.update(drop=round(drop, 5), drop_ci95_paired=[round(low, 5), round(high, 5)])
    out["diagnostics"] = {k: round(v, 5) for k, v in ev.diagnostics.items()}
    return out, ev.items


def describe(model: Any) -> dict[str, int]:
    params, _ = count_params(model) if isinstance(model, torch.nn.Module) else (None, None)
    size = serialized_size_bytes(model) if isinstance(model, torch.nn.Module) else None
    return {"params": params, "size_bytes": size}


def distill_info(record: Any) -> dict[str, Any] | None:
    step = next((s for s in record.steps if s.stage == "distill" and s.technique == "kd"), None)
    if step is None:
        return None
    steps = step.details["steps"]
    return {
        "steps": steps,
        "loss": step.details.get("loss"),
        "seconds": round(step.seconds, 1),
        "seconds_per_step": round(step.seconds / steps, 3),
        "first_loss": step.details.get("first_loss"),
        "final_loss": step.details.get("final_loss"),
    }


def run(args: argparse.Namespace) -> tuple[dict, dict]:
    torch.set_num_threads(args.threads)
    settings = {"metric": METRIC, "seq_len": args.seq_len, **(QUICK_TASK if args.quick else {})}
    started = time.perf_counter()
    task = load_task("minilm", settings)
    teacher = task.teacher().eval()
    task.data("test")  # builds (or reads) the tokenized splits and the teacher's cached embeddings
    timings = {"task_load_seconds": round(time.perf_counter() - started, 1)}
    kd = dict(kd_steps=args.kd_steps, kd_learning_rate=args.kd_lr, kd_batch_size=args.kd_batch, seed=args.seed)

    rows: dict[str, dict] = {"teacher": {"recipe": {}}}
    rows["teacher"]["test"], teacher_items = evaluate(task, teacher, None, args.seed)
    rows["teacher"].update(describe(teacher))
    timed: dict[str, Any] = {"teacher": teacher}
    for name, recipe in recipes(kd, tuple(args.kd_losses.split(","))).items():
        t0 = time.perf_counter()
        compressed = apply_recipe(task, recipe, teacher=teacher)
        row = rows[name] = {"recipe": recipe.model_dump(exclude_defaults=True, exclude={"version"}),
                            "build_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        if (info := distill_info(compressed.record)) is not None:
            row["distill"] = info
        if compressed.record.fallbacks:
            row["fallbacks"] = compressed.record.fallbacks
        row["test"], _ = evaluate(task, compressed.model, teacher_items, args.seed)
        row.update(describe(compressed.model))
        if compressed.record.deployed_size_bytes is not None:
            row["size_bytes"] = compressed.record.deployed_size_bytes  # the file the runtime serves (ONNX, OpenVINO IR)
        if timed_as(name) == name:
            timed[name] = compressed.model
        print(f"{name}: built in {row['build_seconds']} s, test {row['test']}", flush=True)
    timings["build_and_evaluate_seconds"] = round(time.perf_counter() - started, 1)

    batch = task.example_batch(args.batch)
    timed["teacher_again"] = copy.deepcopy(teacher)  # the teacher as a second model: the ratio's own noise
    rows["teacher_again"] = {"recipe": {}, "note": "the teacher timed as a second model (throughput only)"}
    t0 = time.perf_counter()
    per_round = interleaved_throughput(timed, batch, rounds=args.rounds, repeats=args.repeats)
    timings["throughput_seconds"] = round(time.perf_counter() - t0, 1)
    for name, row in rows.items():
        sps = per_round[timed_as(name)]
        ratios = [r / t for r, t in zip(sps, per_round["teacher"])]
        row.update(
            throughput_sps=round(statistics.median(sps), 2),
            throughput_ratio=round(statistics.median(ratios), 3),
            throughput_ratio_min=round(min(ratios), 3),
            throughput_ratio_max=round(max(ratios), 3),
        )
        if timed_as(name) != name:
            row["throughput_of"] = timed_as(name)
        else:
            row["throughput_rounds_sps"] = [round(v, 2) for v in sps]
    timings["total_seconds"] = round(time.perf_counter() - started, 1)
    return rows, {"task_settings": {**task.settings.model_dump(exclude={"model_path", "metric"})}, "timings": timings}


def loss_choice(rows: dict, losses: tuple[str, ...]) -> dict:
    """Which distillation loss gave back most nDCG@10 on test: the mean drop over the three shapes, per loss."""
    per_loss = {}
    for loss in losses:
        drops = {shape: rows[f"{shape}_kd_{loss}"]["test"]["drop"] for shape in SHAPES if f"{shape}_kd_{loss}" in rows}
        per_loss[loss] = {"drops": drops, "mean_drop": round(statistics.mean(drops.values()), 5)}
    best = min(per_loss, key=lambda loss: per_loss[loss]["mean_drop"])
    return {"per_loss": per_loss, "best": best, "rule": "smallest mean nDCG@10 drop on test over layers4, layers3 and ffn50"}


def targets(rows: dict, losses: tuple[str, ...]) -> dict:
    """Each target judged on the best loss for that shape (the search picks the loss per candidate), and OpenVINO's."""
    out: dict[str, Any] = {}
    for shape, (max_drop, min_ratio) in TARGETS.items():
        best = min((f"{shape}_kd_{loss}" for loss in losses), key=lambda n: rows[n]["test"]["drop"])
        row = rows[best]
        met = row["test"]["drop"] <= max_drop and (min_ratio is None or row["throughput_ratio"] >= min_ratio)
        out[shape] = {"variant": best, "drop": row["test"]["drop"], "drop_ci95_paired": row["test"]["drop_ci95_paired"],
                      "max_drop": max_drop, "throughput_ratio": row["throughput_ratio"], "min_throughput_ratio": min_ratio,
                      "met": met}  # fmt: skip
    ov, ort = rows["int8_openvino"], rows["int8_onnxruntime"]
    ratios = [a / b for a, b in zip(ov["throughput_rounds_sps"], ort["throughput_rounds_sps"])]
    ratio = statistics.median(ratios)
    out["openvino_int8"] = {
        "drop": ov["test"]["drop"], "drop_ci95_paired": ov["test"]["drop_ci95_paired"],
        "ratio_to_onnxruntime_int8": round(ratio, 3), "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "met": ov["test"]["drop"] <= TARGET_OPENVINO["max_drop"] and ratio >= TARGET_OPENVINO["min_ratio_to_onnxruntime"],
    }  # fmt: skip
    return out


# --------------------------------------------------------------------------- --search


def _run_search(config_path: Path, scheduler: str, trials: int, out_dir: Path) -> dict:
    """One CLI search with search.scheduler overridden; returns its run folder and wall time."""
    import yaml

    config = yaml.safe_load(config_path.read_text())
    config.setdefault("search", {})["scheduler"] = scheduler
    catalog = config.get("deployment", {}).get("catalog")
    if isinstance(catalog, str) and catalog != "bundled" and not Path(catalog).is_absolute():
        config["deployment"]["catalog"] = str((config_path.parent / catalog).resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"minilm_{scheduler}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = [sys.executable, "-m", "orchestrator", "search", str(path), "--out", str(out_dir / "runs"), "--trials", str(trials)]
    print("running", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"search ({scheduler}) failed with {done.returncode}:\n{done.stderr[-4000:]}")
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    return {"scheduler": scheduler, "run_dir": str(run_dir), "wall_seconds": round(wall, 1), "config": config}


def _tune_seconds(run_dir: Path) -> dict[str, float]:
    """Tune's time_total_s of each trial (last result.json line), which stopped trials also have."""
    out = {}
    for result in (run_dir / "tune").glob("*/result.json"):
        lines = [ln for ln in result.read_text().splitlines() if ln.strip()]
        if lines:
            last = json.loads(lines[-1])
            out[str(last.get("trial_id"))] = float(last.get("time_total_s") or 0.0)
    return out


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0", "yes")


def _search_figures(run: dict) -> dict:
    run_dir = Path(run["run_dir"])
    with open(run_dir / "trials.csv", newline="") as fh:
        trials = list(csv.DictReader(fh))
    statuses = [t["status"] for t in trials]
    trial_seconds = [float(t["trial_seconds"]) for t in trials if t.get("trial_seconds") not in (None, "")]
    tune = _tune_seconds(run_dir)
    base = [t for t in trials if _truthy(t.get("baseline")) and t["status"] == "finished"]
    return {
        "scheduler": run["scheduler"],
        "run_dir": run["run_dir"],
        "trials": trials,
        "n_trials": len(trials),
        "n_finished": statuses.count("finished"),
        "n_stopped": statuses.count("stopped"),
        "n_failed": statuses.count("failed"),
        "wall_seconds": run["wall_seconds"],
        "trial_seconds_sum": round(sum(trial_seconds), 1),
        "trial_seconds_counted": len(trial_seconds),
        "tune_time_total_s_sum": round(sum(tune.values()), 1),
        "baseline_quality": float(base[0]["quality"]) if base else None,
    }


def search_comparison(args: argparse.Namespace) -> dict:
    """search_spaces/minilm.yaml with scheduler none and asha: compute spent and final hypervolume.

    With `--search-runs`, finished run folders (their config.yaml says which scheduler) are compared instead.
    """
    if not SEARCH_CONFIG.is_file():
        raise SystemExit(f"{SEARCH_CONFIG} does not exist yet; nothing to search")
    import yaml

    out_dir = Path(args.search_out or tempfile.mkdtemp(prefix="hedgerow-minilm-search-"))
    done = {run["scheduler"]: run for run in (_existing_run(Path(p)) for p in args.search_runs or [])}
    runs = [_search_figures(done[s] if s in done else _run_search(SEARCH_CONFIG, s, args.search_trials, out_dir))
            for s in ("none", "asha")]  # fmt: skip
    objective = yaml.safe_load(SEARCH_CONFIG.read_text()).get("objective", {})
    return {
        "config": str(SEARCH_CONFIG.relative_to(REPO)),
        "trials": args.search_trials,
        "measured_at": machine()["measured_at"],
        "runs_folder": str(out_dir),
        **compare_runs(runs, float(objective.get("max_quality_drop", 0.0))),
    }


def _existing_run(run_dir: Path) -> dict:
    """A finished run folder as `_run_search` returns one (its config.yaml says which scheduler); wall time from
    run.json's start to trials.csv's write."""
    import yaml
    from datetime import datetime

    started = json.loads((run_dir / "run.json").read_text()).get("created")
    wall = (run_dir / "trials.csv").stat().st_mtime - datetime.fromisoformat(str(started)).timestamp() if started else None
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    scheduler = str(config.get("search", {}).get("scheduler", "asha"))
    return {"scheduler": scheduler, "run_dir": str(run_dir), "wall_seconds": round(wall, 1) if wall else None, "config": config}


def compare_runs(runs: list[dict], max_drop: float) -> dict:
    """Hypervolume of each run's feasible trials on one shared reference point, and compute spent, asha against none."""
    from search_efficiency import COST_MARGIN_LOG10, hypervolume_2d, pareto_front

    teacher_q = max(r["baseline_quality"] for r in runs if r["baseline_quality"] is not None)
    bound = teacher_q - max_drop

    def feasible(t: dict) -> bool:
        return t["status"] == "finished" and _truthy(t.get("feasible")) and t.get("quality") not in (None, "") and float(t["quality"]) >= bound - 1e-12

    every = [t for r in runs for t in r["trials"] if feasible(t)]
    q_step = 1e-3
    dearest = max((float(t["monthly_usd"]) for t in every), default=1.0)  # no feasible trial in either run: both 0
    ref = (bound - q_step, math.log10(dearest) + COST_MARGIN_LOG10)
    for r in runs:
        points = [(float(t["quality"]), math.log10(float(t["monthly_usd"]))) for t in r.pop("trials") if feasible(t)]
        r["feasible_trials"] = len(points)
        r["hypervolume"] = round(hypervolume_2d(points, ref), 6)
        r["cheapest_feasible_usd"] = round(10 ** min(c for _, c in points), 2) if points else None
        r["front"] = [{"quality": round(q, 5), "monthly_usd": round(10**c, 2)} for q, c in pareto_front(points)]
    none, asha = runs
    return {
        "reference_point": {"quality": ref[0], "log10_monthly_usd": ref[1], "monthly_usd": round(10 ** ref[1], 2),
                            "rule": f"quality: the bound (baseline val quality − max_quality_drop) − {q_step}; cost: log10 of the "
                                    f"dearest feasible trial's $ over both runs + {COST_MARGIN_LOG10}"},  # fmt: skip
        "hypervolume_method": "bench/search_efficiency.py's hypervolume_2d: feasible trials only (finished, priced feasible, "
        "within the quality bound), val quality up, log10 $/month down",
        "compute_note": "trial_seconds_sum is what the product's summary prices (trials.csv, as summary.py sums it); "
        "tune_time_total_s_sum is Tune's per-trial time, which stopped trials also carry",
        "runs": {r["scheduler"]: r for r in runs},
        "asha_vs_none": {
            "wall_ratio": round(asha["wall_seconds"] / none["wall_seconds"], 3) if asha["wall_seconds"] and none["wall_seconds"] else None,
            "tune_seconds_ratio": round(asha["tune_time_total_s_sum"] / none["tune_time_total_s_sum"], 3) if none["tune_time_total_s_sum"] else None,
            "hypervolume_ratio": round(asha["hypervolume"] / none["hypervolume"], 3) if none["hypervolume"] else None,
        },
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kd-steps", type=int, default=KD_STEPS)
    parser.add_argument("--kd-lr", type=float, default=KD_LR)
    parser.add_argument("--kd-batch", type=int, default=KD_BATCH)
    parser.add_argument("--kd-losses", default=",".join(KD_LOSSES), help="distillation losses compared, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32, help="serving batch (texts)")
    parser.add_argument("--seq-len", type=int, default=128, help="tokens per text (the serving length)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per model per round")
    parser.add_argument("--quick", action="store_true", help="smoke run on tiny sizes: prints the JSON, writes nothing")
    parser.add_argument("--search", action="store_true", help="run the minilm search with scheduler none and asha instead")
    parser.add_argument("--search-trials", type=int, default=12)
    parser.add_argument("--search-out", help="folder for the two search runs (default: a new temporary folder)")
    parser.add_argument("--search-runs", nargs="*", help="finished run folders to compare instead of running them")
    args = parser.parse_args()
    if args.quick:
        args.kd_steps, args.kd_batch, args.seq_len = min(args.kd_steps, 4), min(args.kd_batch, 8), min(args.seq_len, 32)
        args.batch, args.rounds, args.repeats = min(args.batch, 4), 2, 2

    if args.search:
        if args.quick:
            args.search_trials = min(args.search_trials, 2)
        result = search_comparison(args)
        if args.quick:  # a smoke run of the code path: printed, never written
            print(json.dumps(result, indent=2))
            return
        path = RESULTS / f"{NAME}.json"
        payload = json.loads(path.read_text()) if path.is_file() else {"benchmark": NAME}
        payload["search"] = result
        print(json.dumps(result, indent=2))
        print(write(NAME, payload))
        return

    losses = tuple(args.kd_losses.split(","))
    rows, extra = run(args)
    payload = {
        "benchmark": NAME,
        "task": "minilm (all-MiniLM-L6-v2 on Python-docs paragraphs; quality: nDCG@10 on the test split's inverse-cloze labels)",
        "settings": {
            "threads": args.threads, "serving_batch": args.batch, "seq_len": args.seq_len, "rounds": args.rounds,
            "repeats": args.repeats, "kd_steps": args.kd_steps, "kd_learning_rate": args.kd_lr, "kd_batch_size": args.kd_batch,
            "kd_losses": list(losses), "seed": args.seed, "quick": args.quick, **extra["task_settings"],
        },  # fmt: skip
        "method": "quality: nDCG@10 over the test queries with a bootstrap 95% interval; drop = teacher minus candidate with "
        "a paired bootstrap interval over the same queries (orchestrator.tasks.base.paired_drop). Throughput: every "
        "distinct shape timed round-robin (median of `repeats` batches per round); ratios per round against the teacher, "
        "median (min, max) over rounds; a distilled variant is timed as its undistilled twin (the same shape and kernels)",
        "machine": machine(),
        "timings": extra["timings"],
        "variants": rows,
        "loss_choice": loss_choice(rows, losses),
        "targets": targets(rows, losses),
    }
    if not args.quick:
        old = RESULTS / f"{NAME}.json"
        if old.is_file() and "search" in (previous := json.loads(old.read_text())):
            payload["search"] = previous["search"]  # a separate `--search` run's figures are kept
    for name, row in rows.items():
        t = row.get("test", {})
        d = row.get("distill") or {}
        print(f"{name:24s} nDCG@10 {t.get('ndcg_at_10', '-'):>8}  drop {t.get('drop', '-'):>8} {t.get('drop_ci95_paired', '')}  "
              f"thr x{row['throughput_ratio']:.2f} [{row['throughput_ratio_min']:.2f}-{row['throughput_ratio_max']:.2f}]"
              + (f"  kd {d['seconds_per_step']:.2f} s/step" if d else ""))  # fmt: skip
    print(json.dumps({"loss_choice": payload["loss_choice"], "targets": payload["targets"]}, indent=1))
    if args.quick:
        return
    print(write(NAME, payload))


if __name__ == "__main__":
    main()
