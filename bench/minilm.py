"""MiniLM benchmark: all-MiniLM-L6-v2 compressed by int8, FFN pruning, layer dropping and distillation.

On the built-in `minilm` task (the pretrained encoder on Python-docs paragraphs), each
variant is built with the product's own steps (`apply_recipe`; the `_int8` rows quantize
a copy of the distilled float model with `dynamic_int8`, exactly the int8 stage
`apply_recipe` would run after the same distillation, so nothing is distilled twice),
then judged on the **test** split by fidelity (mean cosine to the teacher's embedding)
and recall@10 (share of the teacher's ten nearest passages the candidate also ranks in
its ten nearest), each with its 95% bootstrap interval. Params, serialized size and
throughput at the serving batch (default 32 texts × 128 tokens), timed in interleaved
rounds against the teacher: the per-round ratio to the teacher is the figure to read,
raw sentences/s move with whatever else shares the machine. `teacher_again` is the
teacher timed as a second model: its ratio is the measurement's own noise.

Rows: teacher, int8, ffn50, layers3 (6 → 3 layers), ffn50_kd, layers3_kd, ffn50_kd_int8,
layers3_kd_int8. Targets: FFN 50% + distillation reaches fidelity ≥ 0.95 and ≥ 1.4× the
teacher's throughput.

`--search` (not run by default) instead runs search_spaces/minilm.yaml's search twice,
with `search.scheduler: none` and with `asha`, through the product's CLI, and records the
compute each spent (summed trial seconds, Tune's per-trial time, wall time) and the
final Pareto hypervolume of each (as bench/search_efficiency.py computes it, on one
reference point shared by both runs); it merges that into the existing minilm.json.

Run: `.venv/bin/python bench/minilm.py [--kd-steps N] [--kd-lr LR] [--kd-batch B] [--threads 2]
[--batch 32] [--seq-len 128] [--rounds 7] [--repeats 5]`; `--quick` is a smoke run on tiny
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
from orchestrator.compress.quantize import dynamic_int8  # noqa: E402
from orchestrator.measure import count_params, interleaved_throughput, serialized_size_bytes  # noqa: E402
from orchestrator.tasks import load_task  # noqa: E402

NAME = "minilm"
SEARCH_CONFIG = REPO / "search_spaces" / "minilm.yaml"
METRICS = ("fidelity", "recall_at_10")
TARGET_FIDELITY = 0.95
TARGET_THROUGHPUT = 1.4

# Defaults: see the README's minilm section for the runs they were chosen from.
KD_STEPS = 600
KD_LR = 3e-4
KD_BATCH = 32
KD_HIDDEN_WEIGHT = 0.0
N_TRAIN: int | None = None

QUICK_TASK = dict(n_train=128, n_val_passages=40, n_val_queries=8, n_test_passages=40, n_test_queries=8)


def recipes(kd: dict[str, Any]) -> dict[str, Recipe]:
    """The float variants built by apply_recipe (the `_int8` rows quantize the distilled ones)."""
    return {
        "int8": Recipe(bits=8),
        "ffn50": Recipe(prune_ffn_ratio=0.5),
        "layers3": Recipe(keep_layers=3),
        "ffn50_kd": Recipe(prune_ffn_ratio=0.5, **kd),
        "layers3_kd": Recipe(keep_layers=3, **kd),
    }


def quality(task: Any, model: torch.nn.Module, split: str = "test") -> dict[str, dict]:
    """Fidelity and recall@10 on a split, each with its 95% interval (task.evaluate under each metric)."""
    out = {}
    before = task.metric
    try:
        for metric in METRICS:
            task.metric = metric
            q = task.evaluate(model, split)
            out[metric] = {"value": round(q["value"], 5), "ci95_low": round(q["ci95_low"], 5), "ci95_high": round(q["ci95_high"], 5)}
    finally:
        task.metric = before
    return out


def describe(model: torch.nn.Module) -> dict[str, int]:
    params, _ = count_params(model)
    return {"params": params, "size_bytes": serialized_size_bytes(model)}


class DistillCurve:
    """Val fidelity every `every` distillation steps, with the evaluations' time kept apart from the steps'.

    apply_recipe evaluates the student on val (the task's metric, fidelity) and then calls
    `on_eval`; `task.evaluate` is wrapped meanwhile so that evaluation's time is known.
    """

    def __init__(self, task: Any, name: str, every: int) -> None:
        self.task, self.name, self.every = task, name, every
        self.points: list[dict] = []
        self.eval_seconds = 0.0

    def __enter__(self) -> "DistillCurve":
        original = self.task.evaluate

        def timed(model: torch.nn.Module, split: str) -> Any:
            started = time.perf_counter()
            try:
                return original(model, split)
            finally:
                self.eval_seconds += time.perf_counter() - started

        self.task.evaluate = timed
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.task.evaluate  # back to the class's method

    def on_eval(self, step: int, value: float) -> None:
        self.points.append({"step": step, "val_fidelity": round(value, 5)})
        print(f"  {self.name} step {step}: val fidelity {value:.4f}", flush=True)


def distill_info(record: Any, curve: DistillCurve | None = None) -> dict[str, Any] | None:
    step = next((s for s in record.steps if s.stage == "distill" and s.technique == "kd"), None)
    if step is None:
        return None
    steps = step.details["steps"]
    evals = curve.eval_seconds if curve is not None else 0.0
    info = {
        "steps": steps,
        "seconds": round(step.seconds - evals, 1),
        "seconds_per_step": round((step.seconds - evals) / steps, 3),
        "first_loss": step.details.get("first_loss"),
        "final_loss": step.details.get("final_loss"),
    }
    if curve is not None and curve.points:
        info["val_curve"] = curve.points
        info["curve_eval_seconds"] = round(evals, 1)
        info["note"] = ("val_curve: the student during this one run (cosine learning-rate decay over all `steps`), not separate "
                        "shorter runs; seconds exclude those evaluations")
    return info


def run(args: argparse.Namespace) -> tuple[dict, dict]:
    torch.set_num_threads(args.threads)
    settings = {"metric": "fidelity", "seq_len": args.seq_len, **(QUICK_TASK if args.quick else {})}
    if args.n_train is not None and not args.quick:
        settings["n_train"] = args.n_train  # val and test are drawn first, so they stay the same texts
    started = time.perf_counter()
    task = load_task("minilm", settings)
    teacher = task.teacher().eval()
    task.data("test")  # builds (or reads) the tokenized splits and the teacher's cached embeddings
    timings = {"task_load_seconds": round(time.perf_counter() - started, 1)}
    kd = dict(kd_steps=args.kd_steps, kd_learning_rate=args.kd_lr, kd_batch_size=args.kd_batch, kd_loss=args.kd_loss,
              kd_hidden_weight=args.kd_hidden_weight, seed=args.seed)

    models: dict[str, torch.nn.Module] = {"teacher": teacher}
    rows: dict[str, dict] = {"teacher": {"recipe": {}}}
    for name, recipe in recipes(kd).items():
        t0 = time.perf_counter()
        with DistillCurve(task, name, args.kd_eval_every) as curve:
            compressed = apply_recipe(task, recipe, teacher=teacher, on_eval=curve.on_eval if args.kd_eval_every else None, eval_every=args.kd_eval_every)
        models[name] = compressed.model
        rows[name] = {"recipe": recipe.model_dump(exclude_defaults=True, exclude={"version"}), "build_seconds": round(time.perf_counter() - t0, 1)}
        if (info := distill_info(compressed.record, curve)) is not None:
            rows[name]["distill"] = info
        if compressed.record.fallbacks:
            rows[name]["fallbacks"] = compressed.record.fallbacks
        print(f"built {name} in {rows[name]['build_seconds']} s", flush=True)
    for name in ("ffn50_kd", "layers3_kd"):
        t0 = time.perf_counter()
        models[f"{name}_int8"] = dynamic_int8(copy.deepcopy(models[name]).eval())
        rows[f"{name}_int8"] = {
            "recipe": {**rows[name]["recipe"], "bits": 8},
            "built_from": f"{name} (the same distilled weights), quantized by orchestrator.compress.quantize.dynamic_int8: "
            "apply_recipe's int8 stage after the same prune and distillation",
            "distill": rows[name].get("distill"),
            "build_seconds": round(time.perf_counter() - t0, 1),
        }

    for name, model in models.items():
        t0 = time.perf_counter()
        rows[name].update(describe(model))
        rows[name]["test"] = quality(task, model)
        print(f"evaluated {name} in {time.perf_counter() - t0:.1f} s: {rows[name]['test']}", flush=True)
    timings["build_and_evaluate_seconds"] = round(time.perf_counter() - started, 1)

    batch = task.example_batch(args.batch)
    timed = dict(models)
    timed["teacher_again"] = copy.deepcopy(teacher)  # the teacher as a second model: the ratio's own noise
    rows["teacher_again"] = {"recipe": {}, "note": "the teacher timed as a second model (throughput only)"}
    t0 = time.perf_counter()
    per_round = interleaved_throughput(timed, batch, rounds=args.rounds, repeats=args.repeats)
    timings["throughput_seconds"] = round(time.perf_counter() - t0, 1)
    base = rows["teacher"]
    for name in timed:
        sps = per_round[name]
        ratios = [r / t for r, t in zip(sps, per_round["teacher"])]
        row = rows[name]
        row.update(
            throughput_sps=round(statistics.median(sps), 2),
            throughput_rounds_sps=[round(v, 2) for v in sps],
            throughput_ratio=round(statistics.median(ratios), 3),
            throughput_ratio_min=round(min(ratios), 3),
            throughput_ratio_max=round(max(ratios), 3),
        )
        if "params" in row:
            row["params_ratio"] = round(row["params"] / base["params"], 4)
            row["size_ratio"] = round(row["size_bytes"] / base["size_bytes"], 4)
    timings["total_seconds"] = round(time.perf_counter() - started, 1)
    return rows, {"task_settings": {**task.settings.model_dump(exclude={"model_path", "metric"})}, "timings": timings}


def targets(rows: dict) -> dict:
    """FFN 50% + distillation: fidelity ≥ 0.95 and throughput ≥ 1.4× the teacher (also shown for its int8 copy)."""
    out: dict[str, Any] = {"target": f"FFN 50% + distillation: test fidelity >= {TARGET_FIDELITY} and throughput >= {TARGET_THROUGHPUT}x the teacher"}
    for name in ("ffn50_kd", "ffn50_kd_int8"):
        row = rows[name]
        fid = row["test"]["fidelity"]
        out[name] = {
            "fidelity": fid["value"],
            "fidelity_ci95": [fid["ci95_low"], fid["ci95_high"]],
            "throughput_ratio": row["throughput_ratio"],
            "fidelity_ge_target": fid["value"] >= TARGET_FIDELITY,
            "throughput_ge_target": row["throughput_ratio"] >= TARGET_THROUGHPUT,
        }
        out[name]["met"] = out[name]["fidelity_ge_target"] and out[name]["throughput_ge_target"]
    out["met"] = out["ffn50_kd"]["met"]
    out["judged_on"] = "ffn50_kd (float); ffn50_kd_int8 shown beside it"
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
    """search_spaces/minilm.yaml with scheduler none and asha: compute spent and final hypervolume."""
    if not SEARCH_CONFIG.is_file():
        raise SystemExit(f"{SEARCH_CONFIG} does not exist yet; nothing to search")
    import yaml

    out_dir = Path(args.search_out or tempfile.mkdtemp(prefix="hedgerow-minilm-search-"))
    runs = [_search_figures(_run_search(SEARCH_CONFIG, s, args.search_trials, out_dir)) for s in ("none", "asha")]
    objective = yaml.safe_load(SEARCH_CONFIG.read_text()).get("objective", {})
    return {
        "config": str(SEARCH_CONFIG.relative_to(REPO)),
        "trials": args.search_trials,
        "measured_at": machine()["measured_at"],
        "runs_folder": str(out_dir),
        **compare_runs(runs, float(objective.get("max_quality_drop", 0.0))),
    }


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
            "wall_ratio": round(asha["wall_seconds"] / none["wall_seconds"], 3),
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
    parser.add_argument("--kd-loss", choices=["auto", "cosine", "mse"], default="auto")
    parser.add_argument("--kd-hidden-weight", type=float, default=KD_HIDDEN_WEIGHT, help="weight of matching each kept layer's hidden states")
    parser.add_argument("--n-train", type=int, default=N_TRAIN, help="distillation texts (the task's n_train; None: its default, 2000)")
    parser.add_argument("--kd-eval-every", type=int, default=100, help="val fidelity every N distillation steps (0: none)")
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
    args = parser.parse_args()
    if args.quick:
        args.kd_steps, args.kd_batch, args.seq_len = min(args.kd_steps, 4), min(args.kd_batch, 8), min(args.seq_len, 32)
        args.kd_eval_every = min(args.kd_eval_every, 2)
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

    rows, extra = run(args)
    payload = {
        "benchmark": NAME,
        "task": "minilm (all-MiniLM-L6-v2 on Python-docs paragraphs; quality on the test split against the teacher's cached embeddings)",
        "settings": {
            "threads": args.threads, "serving_batch": args.batch, "seq_len": args.seq_len, "rounds": args.rounds,
            "repeats": args.repeats, "kd_steps": args.kd_steps, "kd_learning_rate": args.kd_lr, "kd_batch_size": args.kd_batch,
            "kd_loss": args.kd_loss, "kd_hidden_weight": args.kd_hidden_weight, "kd_eval_every": args.kd_eval_every, "seed": args.seed, "quick": args.quick, **extra["task_settings"],
        },  # fmt: skip
        "method": "throughput: every model timed round-robin (median of `repeats` batches per round); ratios are per round "
        "against the teacher, median (min, max) over rounds. The machine (2 cores) was shared with other work while this ran, "
        "so raw sentences/s are noisy: the interleaved ratio is the figure that counts; teacher_again's ratio is the noise",
        "machine": machine(),
        "timings": extra["timings"],
        "variants": rows,
        "targets": targets(rows),
    }
    if not args.quick:
        old = RESULTS / f"{NAME}.json"
        if old.is_file() and "search" in (previous := json.loads(old.read_text())):
            payload["search"] = previous["search"]  # a separate `--search` run's figures are kept
    for name, row in rows.items():
        t = row.get("test", {})
        fid, rec = t.get("fidelity", {}).get("value"), t.get("recall_at_10", {}).get("value")
        d = row.get("distill") or {}
        print(f"{name:18s} fid {fid if fid is not None else '-':>8}  r@10 {rec if rec is not None else '-':>8}  "
              f"params x{row.get('params_ratio', '-')}  size x{row.get('size_ratio', '-')}  thr x{row['throughput_ratio']:.2f} "
              f"[{row['throughput_ratio_min']:.2f}-{row['throughput_ratio_max']:.2f}] {row['throughput_sps']:.1f} sps"
              + (f"  kd {d['seconds_per_step']:.2f} s/step" if d else ""))  # fmt: skip
    print(payload["targets"])
    if args.quick:
        print(json.dumps(payload, indent=1)[:3000])
        return
    print(write(NAME, payload))


if __name__ == "__main__":
    main()
