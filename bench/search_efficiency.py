"""Is the joint search worth running? Searchers against a tabular benchmark of real digits recipes.

Two parts:

* `--build-table` (once; 16–23 min on 2 shared cores, plus ~28 min for the further
  distillation seeds, or ~14 min as two `--quality-seeds ... --shard k/2` processes):
  every recipe of a grid over the joint space (prune method × ratio × bits ×
  distillation steps × temperature) is really compressed, evaluated on val and test,
  measured, and priced with the cost model on search_spaces/digits.yaml's traffic
  and catalog. A distilled recipe's quality is the mean over 5 distillation seeds
  (as NAS-Bench-201 and HPOBench average their tables over seeds): with one seed,
  val accuracy moves in steps of one example of 359, and which recipes tie on the
  front depends on the seed each drew. Throughput is measured
  in interleaved rounds against the teacher (noise cancels in the per-round ratio)
  and stored as ratio × the teacher's reference median. Written to
  bench/data/digits_table.csv with a sidecar bench/data/digits_table.json (grid,
  machine, traffic, catalog, teacher quality, method).
* the default: each searcher (TPE, NSGA-II, GP, random, grid order) runs on the
  product's own Tuner (`orchestrator.search.runner._new_tuner`: ConstrainedOptunaSearch
  with the define-by-run space, ConcurrencyLimiter, reuse_actors) over a space of
  exactly the table's grid values; the trainable looks its recipe up in the table
  instead of compressing. 5 seeds × budgets 10, 20, 40, and 240 (the trials needed
  to reach 95% of the table's full hypervolume are counted on the 240-trial runs:
  random search gets there in fewer than half its seeds within 120, and a censored
  median says only "more than"). Reports the Pareto hypervolume (val quality up, log10 monthly $ down,
  feasible trials only) per budget, the trials needed to reach 95%, and the
  cheapest monthly $ within the quality bound against the hand-built sequential
  chain (prune → bits → distill → instance).
* a replay of the same searcher objects without Ray over 60 seeds (`--replay-seeds`):
  with 5 seeds, a median of trials-to-95% moves by a factor of two from one set of
  seeds to the next. The replay proposes exactly what the Tuner proposes on the
  seeds both run (checked on every run, `replay.matches_tuner`).
* `--tuner-seeds 60` (`make bench-seeds`; ~50 min as two `--shard k/2` processes, then
  once without `--shard`): the 240-trial searches of the replayed searchers for 60 seeds
  on the Tuner itself, so the target's many-seed figure needs no replay to stand for it;
  runs go to bench/results/search_efficiency_tuner_seeds.runs.jsonl (resumable), figures
  to bench/results/search_efficiency_tuner_seeds.json, with the replay checked against
  every run.

Writes bench/results/search_efficiency.json and bench/results/search_efficiency.png.

Run: `.venv/bin/python bench/search_efficiency.py [--seeds 5] [--samplers tpe,nsga2,gp,random,grid]
[--need-budget 240] [--replay-seeds 60] [--replay-samplers tpe,nsga2,random,grid]`;
`--build-table [--resume]` rebuilds the table, `--quality-seeds 1,2,3,4 [--shard k/n]` (re)measures
the further distillation seeds, `--reprice` re-derives it from the raw readings.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))


DATA = BENCH / "data"
TABLE_CSV = DATA / "digits_table.csv"
TABLE_JSON = DATA / "digits_table.json"
RAW = DATA / "digits_table.raw.jsonl"  # every group's raw measurements: --reprice re-derives the CSV from them
RAW_META = DATA / "digits_table.raw.json"  # how the raw measurements were taken
QUALITY_SEEDS = DATA / "digits_table.quality_seeds.jsonl"  # distilled rows' quality under further distillation seeds
CONFIG = REPO / "search_spaces" / "digits.yaml"
PLOT = BENCH / "results" / "search_efficiency.png"
TUNER_SEEDS_RUNS = BENCH / "results" / "search_efficiency_tuner_seeds.runs.jsonl"  # --tuner-seeds: one Tuner run per line

# The grid. Knobs not named here stay at the Recipe's defaults (l2 importance,
# global scope, kd_alpha 0.7, kd_learning_rate 1e-3, kd_batch_size 64, no QAT).
GRID: dict[str, list] = {
    "prune_method": ["none", "structured", "unstructured"],
    "prune_ratio": [0.3, 0.5, 0.7, 0.85],
    "bits": [32, 16, 8, 4],
    "kd_steps": [0, 100, 300],
    "kd_temperature": [2.0, 6.0],
}
SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
BUDGETS = (10, 20, 40)
NEED_BUDGET = 240  # the trials-to-95% runs: long enough that random search gets there in most seeds
REPLAY_SAMPLERS = ("tpe", "nsga2", "random", "grid")  # GP's fit makes 60 seeds × 240 trials take over an hour
TARGET_FRACTION = 0.95
COST_MARGIN_LOG10 = 0.05  # the $ reference point sits this far (×1.12) above the dearest feasible row
RECIPE_SEED = 0  # every table recipe is built with seed 0, whatever the search's seed
QUALITY_SEED_LIST = (1, 2, 3, 4)  # further distillation seeds a distilled row's quality is averaged over


# --------------------------------------------------------------------------- pure helpers


def hypervolume_2d(points: Iterable[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Exact area dominated by (quality, cost) points, quality maximized, cost minimized, bounded by ref.

    ref = (q_ref, c_ref): only points with quality > q_ref and cost < c_ref count.
    Sweep in ascending cost: each point that raises the best quality so far adds
    the strip (q − q_best_before) × (c_ref − c).
    """
    q_ref, c_ref = ref
    inside = sorted((c, -q) for q, c in points if q > q_ref and c < c_ref)
    area, best = 0.0, q_ref
    for c, neg_q in inside:
        q = -neg_q
        if q > best:
            area += (q - best) * (c_ref - c)
            best = q
    return area


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (quality max, cost min) points, in ascending cost."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for c, neg_q in sorted((c, -q) for q, c in set(points)):
        if -neg_q > best:
            front.append((-neg_q, c))
            best = -neg_q
    return front


def hypervolume_curve(points: Sequence[tuple[float, float] | None], ref: tuple[float, float]) -> list[float]:
    """Hypervolume after each trial (None = an infeasible trial, which adds nothing)."""
    curve, seen = [], []
    for p in points:
        if p is not None:
            seen.append(p)
        curve.append(hypervolume_2d(seen, ref))
    return curve


def trials_to_reach(curve: Sequence[float], target: float) -> int | None:
    """The first trial count (1-based) whose hypervolume reaches target, or None."""
    for i, value in enumerate(curve):
        if value >= target - 1e-12:
            return i + 1
    return None


def table_recipes(grid: dict[str, list] | None = None) -> list[dict[str, Any]]:
    """Every distinct recipe of the grid: no ratio without pruning, no temperature without distillation."""
    return [knobs for _, *group in table_groups(grid) for knobs in group_recipes(*group, grid=grid)]


def group_recipes(method: str, ratio: float, steps: int, temp: float | None, grid: dict[str, list] | None = None) -> list[dict[str, Any]]:
    """The knobs of each bit-width of one group."""
    grid = GRID if grid is None else grid
    recipes = []
    for bits in grid["bits"]:
        knobs: dict[str, Any] = {"prune_method": method, "prune_ratio": ratio, "bits": bits, "kd_steps": steps}
        if steps:
            knobs["kd_temperature"] = temp
        recipes.append(knobs)
    return recipes


def kd_settings(grid: dict[str, list] | None = None) -> list[tuple[int, float | None]]:
    """(kd_steps, temperature) pairs: (0, None) once, then every steps > 0 × temperature."""
    grid = GRID if grid is None else grid
    return [(0, None)] + [(s, t) for s in grid["kd_steps"] if s > 0 for t in grid["kd_temperature"]]


def table_groups(grid: dict[str, list] | None = None) -> list[tuple[str, str, float, int, float | None]]:
    """(name, prune method, ratio, kd_steps, temperature) of each group the build prunes and distils once.

    The name keys a group in the raw readings and in the further seeds' readings alike.
    """
    grid = GRID if grid is None else grid
    prefixes = [(m, r) for m in grid["prune_method"] for r in ([0.0] if m == "none" else grid["prune_ratio"])]
    return [(f"{m}-{r}-{s}-{t}", m, r, s, t) for m, r in prefixes for s, t in kd_settings(grid)]


def _selected(name: str) -> bool:
    """Whether HEDGEROW_BENCH_GROUPS (a comma list of group names, for trying the build quickly) lets a group run."""
    only = os.environ.get("HEDGEROW_BENCH_GROUPS")
    return not only or name in only.split(",")


def median_or_none(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def within_bound(row: dict, teacher_quality: float, max_drop: float) -> bool:
    """The quality bound the product enforces (drop ≤ max_quality_drop)."""
    return teacher_quality - float(row["quality"]) <= max_drop + 1e-12


def is_feasible(row: dict, teacher_quality: float, max_drop: float) -> bool:
    """Within the quality bound and priced on a feasible instance."""
    return within_bound(row, teacher_quality, max_drop) and _bool(row["feasible"])


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def sequential_chain(lookup: dict[tuple, dict], grid: dict[str, list], teacher_quality: float, max_drop: float, method: str, pick_bits: str = "fewest") -> dict:
    """The chain users build by hand, run on the table; every distinct row it reads is one evaluation.

    1. prune: raise the ratio (ascending grid values) at full precision without
       distillation while quality stays within the bound; keep the highest that did.
    2. bits: at that ratio, try every lower precision; keep the fewest bits within
       the bound (pick_bits="cheapest": the cheapest within the bound instead).
    3. distill: at that (ratio, bits), try every distillation setting; keep the one
       with the best quality within the bound (or none if none helps).
    4. instance: the table's cost already is the cheapest feasible instance.
    The chain's answer is the cheapest feasible row among those it kept at each step.
    """
    read: dict[tuple, dict] = {}

    def get(method_: str, ratio: float, bits: int, steps: int = 0, temp: float | None = None) -> dict:
        key = (method_, ratio if method_ != "none" else 0.0, bits, steps, temp if steps else None)
        read[key] = lookup[key]
        return read[key]

    ok = lambda r: within_bound(r, teacher_quality, max_drop)  # noqa: E731
    teacher = get("none", 0.0, 32)
    chosen_method, ratio = "none", 0.0
    for r in sorted(grid["prune_ratio"]):
        if not ok(get(method, r, 32)):
            break
        chosen_method, ratio = method, r
    base = get(chosen_method, ratio, 32)
    bits, bits_row = 32, base
    candidates = [(b, get(chosen_method, ratio, b)) for b in sorted(grid["bits"], reverse=True) if b != 32]
    kept = [(b, row) for b, row in candidates if ok(row)]
    if kept:
        if pick_bits == "fewest":
            bits, bits_row = min(kept, key=lambda br: br[0])
        else:
            bits, bits_row = min(kept, key=lambda br: (_cost_key(br[1], teacher_quality, max_drop), -br[0]))
    kd_rows = [get(chosen_method, ratio, bits, s, t) for s, t in kd_settings(grid) if s > 0]
    kd_best = max((r for r in kd_rows if ok(r)), key=lambda r: float(r["quality"]), default=None)
    finalists = [teacher, base, bits_row] + ([kd_best] if kd_best is not None else [])
    feasible = [(i, r) for i, r in enumerate(finalists) if is_feasible(r, teacher_quality, max_drop)]
    # cheapest; on a tie the later step's recipe (the one the chain ends with), then the better quality
    best = min(feasible, key=lambda ir: (float(ir[1]["monthly_usd"]), -ir[0], -float(ir[1]["quality"])))[1] if feasible else None
    return {
        "method_tried": method,
        "prune_method": chosen_method,
        "prune_ratio": ratio,
        "bits": bits,
        "kd": None if kd_best is None else {"kd_steps": int(kd_best["kd_steps"]), "kd_temperature": float(kd_best["kd_temperature"])},
        "answer": None if best is None else _brief(best),
        "monthly_usd": None if best is None else float(best["monthly_usd"]),
        "evaluations": len(read),
    }


def _cost_key(row: dict, teacher_quality: float, max_drop: float) -> float:
    return float(row["monthly_usd"]) if is_feasible(row, teacher_quality, max_drop) else math.inf


def _brief(row: dict) -> dict:
    keys = ("recipe_key", "prune_method", "prune_ratio", "bits", "kd_steps", "kd_temperature", "quality", "test_quality",
            "throughput_sps", "instance_type", "replicas", "monthly_usd")  # fmt: skip
    out = {k: row.get(k) for k in keys}
    if not int(float(row["kd_steps"])):
        out.pop("kd_temperature")
    return out


def grid_key(row: dict) -> tuple:
    """(method, ratio, bits, kd_steps, temperature or None): the table's natural key."""
    steps = int(float(row["kd_steps"]))
    method = row["prune_method"]
    return (method, float(row["prune_ratio"]) if method != "none" else 0.0, int(float(row["bits"])), steps,
            float(row["kd_temperature"]) if steps else None)  # fmt: skip


# --------------------------------------------------------------------------- building the table


def _search_config(sampler: str = "tpe", seed: int = 0, budget: int = 24, base: dict | None = None):
    """digits.yaml (or the snapshot the table was built with) with its space restricted to exactly the grid, as Choices."""
    import copy

    from orchestrator.config import parse_config, read_yaml

    raw = copy.deepcopy(base) if base is not None else read_yaml(CONFIG)
    raw["space"] = {name: {"choices": list(values)} for name, values in GRID.items()}
    raw["search"].update(trials=budget, sampler=sampler, seed=seed, max_concurrent=1)
    return parse_config(raw, f"{CONFIG} (benchmark grid)")


def _snapshot(config) -> dict:
    """The parts of a config that decide a table row: task, objective, traffic, deployment, search settings."""
    return config.model_dump(mode="json", exclude={"space"})


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _load_raw() -> dict[str, dict]:
    return {group["group"]: group for group in _read_jsonl(RAW)}


def build_table(rounds: int, repeats: int, threads: int | None, check: bool, resume: bool = False) -> None:
    """Compress, evaluate and measure every grid recipe; price them; write the CSV and its sidecar."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from _common import machine

    from orchestrator.compress.recipe import Recipe, apply_recipe
    from orchestrator.measure import interleaved_throughput, measure
    from orchestrator.search.runner import prepare

    config = _search_config()
    prepared = prepare(config)
    task, traffic = prepared.task, config.traffic
    threads = threads or max(1, int(config.search.resources_per_trial.cpu))
    torch.set_num_threads(threads)
    teacher = task.teacher().eval()
    batch = task.example_batch(traffic.serving_batch_size)
    started = time.perf_counter()
    done = _load_raw() if resume else {}
    if resume and RAW_META.is_file():  # measure under the config the first part was measured under
        config = _search_config(base=json.loads(RAW_META.read_text())["config"])
        prepared = prepare(config)
        task, traffic = prepared.task, config.traffic
        teacher = task.teacher().eval()
        batch = task.example_batch(traffic.serving_batch_size)
    DATA.mkdir(parents=True, exist_ok=True)
    if not resume:
        RAW.unlink(missing_ok=True)
        QUALITY_SEEDS.unlink(missing_ok=True)  # readings of another build's models
        RAW_META.write_text(json.dumps({"config": _snapshot(config), "complete": False}, indent=1) + "\n")
    groups = table_groups()
    for gi, (name, method, ratio, steps, temp) in enumerate(groups):
        if name in done or not _selected(name):
            continue
        t0 = time.perf_counter()
        models, rows = {}, []
        for recipe, student, record, compress_seconds in _group_models(task, teacher, method, ratio, steps, temp, RECIPE_SEED):
            metrics = measure(student, batch, threads=threads, batch_repeats=config.search.measure_batch_repeats,
                              latency_repeats=config.search.measure_latency_repeats, size_bytes=record.deployed_size_bytes)  # fmt: skip
            val, test = task.evaluate(student, "val"), task.evaluate(student, "test")
            models[recipe.key()] = student
            rows.append({
                "recipe_key": recipe.key(), **recipe.model_dump(exclude={"version", "seed"}),
                "quality": val["value"], "quality_n": val["n_examples"], "test_quality": test["value"],
                "metrics": metrics.model_dump(mode="json", exclude={"throughput_runs_sps"}),
                "accelerated": record.accelerated, "fallbacks": " | ".join(record.fallbacks),
                "sparse_size_bytes": record.sparse_size_bytes, "compress_seconds": round(compress_seconds, 2),
            })  # fmt: skip
        per_round = interleaved_throughput({"__teacher__": teacher, **models}, batch, rounds=rounds, repeats=repeats)
        group = {"group": name, "rows": rows, "teacher_rounds_sps": per_round.pop("__teacher__"), "rounds_sps": per_round,
                 "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
        with RAW.open("a") as fh:
            fh.write(json.dumps(group) + "\n")
        done[name] = group
        print(f"[{gi + 1}/{len(groups)}] {name}: {group['seconds']}s  val " + " ".join(f"{r['bits']}b={r['quality']:.4f}" for r in rows), flush=True)
    build_seconds = time.perf_counter() - started
    shortcut = _check_shortcut(task, teacher, done, apply_recipe, Recipe) if check else None
    meta = {"config": _snapshot(config), "complete": True, "threads": threads, "rounds": rounds, "repeats": repeats,
            "build_seconds": round(build_seconds, 1), "shortcut_check": shortcut, "machine": machine(),
            "teacher_checkpoint": task.teacher_path.name}  # fmt: skip
    RAW_META.write_text(json.dumps(meta, indent=1) + "\n")
    build_quality_seeds(QUALITY_SEED_LIST)
    write_table()


def _group_models(task, teacher, method: str, ratio: float, steps: int, temp: float | None, seed: int):
    """Each bit-width of one (method, ratio, kd_steps, temperature) group: pruned and distilled once, quantized per copy.

    Yields (recipe, compressed model, compression record, compress seconds); apply_recipe's stages, split before
    the quantize step (`_check_shortcut` compares the result with apply_recipe itself).
    """
    import copy

    import torch

    from orchestrator.compress._registry import Context, apply_technique
    from orchestrator.compress.recipe import Recipe, summarize_steps

    t0 = time.perf_counter()
    recipes = [Recipe(**knobs, seed=seed) for knobs in group_recipes(method, ratio, steps, temp)]
    prefix = [c for c in recipes[0].stages() if type(c).__name__ not in ("HalfPrecisionConfig", "Int8Config", "Int4WeightOnlyConfig")]
    ctx = Context(task=task, teacher=teacher, device=torch.device("cpu"))
    model = copy.deepcopy(teacher)
    prefix_steps = []
    for cfg in prefix:
        model, step = apply_technique(model, cfg, ctx)
        prefix_steps.append(step)
    prefix_seconds = time.perf_counter() - t0
    for recipe in recipes:
        stages = recipe.stages()
        assert stages[: len(prefix)] == prefix, f"{recipe}: its stages do not start with the group's prefix"
        q0 = time.perf_counter()
        qctx = Context(task=task, teacher=teacher, device=torch.device("cpu"), notes=list(ctx.notes))
        student, steps_done = copy.deepcopy(model), list(prefix_steps)
        for cfg in stages[len(prefix):]:
            student, step = apply_technique(student, cfg, qctx)
            steps_done.append(step)
        record = summarize_steps(recipe, torch.device("cpu"), steps_done, qctx)
        yield recipe, student.eval(), record, prefix_seconds + time.perf_counter() - q0


def build_quality_seeds(seeds: Sequence[int], shard: tuple[int, int] = (0, 1)) -> None:
    """Val and test quality of every distilled recipe again with other distillation seeds (no timing: speed does not
    depend on the seed); appended to QUALITY_SEEDS, one line per (group, seed), resumable. Pruning and quantization
    take no seed, so undistilled rows are the same under every seed and are not rebuilt.
    """
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from orchestrator.search.runner import prepare

    meta = json.loads(RAW_META.read_text())
    config = _search_config(base=meta["config"])
    task = prepare(config).task
    if task.teacher_path.name != meta["teacher_checkpoint"]:  # further seeds distil a different teacher's students
        raise SystemExit(f"{RAW_META.name}: the table was measured with teacher {meta['teacher_checkpoint']}, this machine has "
                         f"{task.teacher_path.name}; rebuild the whole table with --build-table")  # fmt: skip
    torch.set_num_threads(1)
    teacher = task.teacher().eval()
    done = {(g["group"], g["seed"]) for g in _read_jsonl(QUALITY_SEEDS)}
    jobs = [(seed, *group) for seed in seeds for group in table_groups() if group[3]]  # distilled groups only
    index, count = shard
    for ji, (seed, name, method, ratio, steps, temp) in enumerate(jobs):
        if ji % count != index or (name, seed) in done or not _selected(name):
            continue
        t0 = time.perf_counter()
        rows = []
        for recipe, student, _, _ in _group_models(task, teacher, method, ratio, steps, temp, seed):
            base = recipe.model_copy(update={"seed": RECIPE_SEED}).key()  # the table's row for this recipe
            rows.append({"recipe_key": base, "bits": recipe.bits, "quality": task.evaluate(student, "val")["value"],
                         "test_quality": task.evaluate(student, "test")["value"]})  # fmt: skip
        line = {"group": name, "seed": seed, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        with QUALITY_SEEDS.open("a") as fh:
            fh.write(json.dumps(line) + "\n")
        print(f"[{ji + 1}/{len(jobs)}] seed {seed} {name}: {line['seconds']}s  val " + " ".join(f"{r['bits']}b={r['quality']:.4f}" for r in rows), flush=True)


def _check_shortcut(task, teacher, done, apply_recipe, Recipe) -> list[dict]:
    """The shared-prefix build against apply_recipe itself, on three recipes: same val quality and size?"""
    from orchestrator.measure import serialized_size_bytes

    rows = {r["recipe_key"]: r for g in done.values() for r in g["rows"]}
    checks = []
    for knobs in ({"prune_method": "structured", "prune_ratio": 0.5, "kd_steps": 100, "kd_temperature": 2.0, "bits": 8},
                  {"prune_method": "unstructured", "prune_ratio": 0.7, "kd_steps": 100, "kd_temperature": 6.0, "bits": 4},
                  {"prune_method": "structured", "prune_ratio": 0.85, "kd_steps": 300, "kd_temperature": 6.0, "bits": 32}):  # fmt: skip
        recipe = Recipe(**knobs, seed=RECIPE_SEED)
        compressed = apply_recipe(task, recipe, teacher=teacher)
        size = compressed.record.deployed_size_bytes or serialized_size_bytes(compressed.model)
        row = rows[recipe.key()]
        val = task.evaluate(compressed.model, "val")["value"]
        checks.append({"recipe": knobs, "table_val": row["quality"], "apply_recipe_val": val, "table_size_bytes": row["metrics"]["size_bytes"],
                       "apply_recipe_size_bytes": size, "same": abs(val - row["quality"]) < 1e-9 and size == row["metrics"]["size_bytes"]})  # fmt: skip
    return checks


def write_table() -> None:
    """Raw measurements → priced rows: throughput = median per-round ratio to the teacher × the teacher's reference.

    Pure arithmetic over bench/data/digits_table.raw.jsonl (no model is run), so
    `--reprice` re-derives the table after a change to the cost model or catalog.
    """
    from orchestrator.compress.recipe import Recipe
    from orchestrator.cost.model import CandidateMetrics, price_candidate
    from orchestrator.search.runner import prepare
    from orchestrator.search.trial import NO_PRICE_USD

    done, meta = _load_raw(), json.loads(RAW_META.read_text())
    config = _search_config(base=meta["config"])  # the config it was measured under, whatever digits.yaml says now
    prepared = prepare(config)
    current = _snapshot(_search_config())
    matches = all(current[k] == meta["config"][k] for k in ("task", "objective", "traffic", "deployment"))
    if not matches:
        print(f"note: {CONFIG.name} has changed since the table was measured; the table keeps the config it was measured under")
    teacher_readings = [v for g in done.values() for v in g["teacher_rounds_sps"]]
    reference = statistics.median(teacher_readings)
    # p95/p50 of batch latency on a shared machine is the neighbours' noise, not the recipe: one factor for all.
    tails = [r["metrics"]["batch_latency_p95_ms"] / r["metrics"]["batch_latency_p50_ms"] for g in done.values() for r in g["rows"]]
    tail = statistics.median(tails)
    batch = config.traffic.serving_batch_size
    extra_seeds, extra = _seed_qualities(done)
    out = []
    for group in done.values():
        t_rounds = group["teacher_rounds_sps"]
        for row in group["rows"]:
            m = row["metrics"]
            ratios = [c / t for c, t in zip(group["rounds_sps"][row["recipe_key"]], t_rounds)]
            ratio = statistics.median(ratios)
            throughput = ratio * reference
            batch_p95 = tail * 1000.0 * batch / throughput
            # The raw readings keep no compression record for search.trial.kernel_archs to read; on a CPU every int8
            # row here is torch.ao int8 on the x86 backend, which the product does not price on Graviton (arm64).
            x86_only = row["bits"] == 8 and m["device"]["kind"] == "cpu" and m["device"]["arch"] == "x86_64"
            cost = price_candidate(
                CandidateMetrics(
                    throughput_sps=throughput, batch_latency_p95_ms=batch_p95, latency_p50_ms=m["latency_p50_ms"],
                    latency_p95_ms=m["latency_p95_ms"], peak_mem_bytes=m["peak_mem_bytes"], size_bytes=m["size_bytes"],
                    device_kind=m["device"]["kind"], device_name=m["device"]["name"], cpu_threads=m["device"]["threads"],
                    cpu_arch=m["device"]["arch"], bits=row["bits"], flops_per_sample=m["flops_per_sample"],
                    measured_instance_type=config.deployment.measured_instance_type, cpu_archs=["x86_64"] if x86_only else None,
                ),
                config.traffic,
                prepared.catalog,
            )  # fmt: skip
            cheapest_any = min((c.monthly_usd for c in cost.per_instance if c.monthly_usd is not None), default=NO_PRICE_USD)
            out.append({
                "recipe_key": row["recipe_key"], "prune_method": row["prune_method"], "prune_ratio": row["prune_ratio"],
                "bits": row["bits"], "kd_steps": row["kd_steps"], "kd_temperature": row["kd_temperature"],
                **_averaged_quality(row, extra.get(row["recipe_key"], [])), "quality_n": row["quality_n"],
                "params": m["params"], "nonzero_params": m["nonzero_params"], "size_bytes": m["size_bytes"],
                "sparse_size_bytes": row["sparse_size_bytes"], "peak_mem_bytes": m["peak_mem_bytes"],
                "flops_per_sample": m["flops_per_sample"],
                "throughput_sps": round(throughput, 1), "throughput_ratio": round(ratio, 4),
                "throughput_ratio_min": round(min(ratios), 4), "throughput_ratio_max": round(max(ratios), 4),
                "teacher_reference_sps": round(reference, 1), "measured_throughput_sps": round(m["throughput_sps"], 1),
                "batch_latency_p95_ms": round(batch_p95, 3), "measured_batch_latency_p50_ms": round(m["batch_latency_p50_ms"], 3),
                "measured_batch_latency_p95_ms": round(m["batch_latency_p95_ms"], 3),
                "latency_p50_ms": round(m["latency_p50_ms"], 4), "latency_p95_ms": round(m["latency_p95_ms"], 4),
                "accelerated": row["accelerated"], "fallbacks": row["fallbacks"],
                "instance_type": cost.instance_type, "replicas": cost.replicas, "monthly_usd": cost.monthly_usd,
                "feasible": cost.feasible, "projected": cost.projected,
                "objective_monthly_usd": cost.monthly_usd if cost.feasible else cheapest_any,
                "compress_seconds": row["compress_seconds"], "cost_reason": cost.reason,
            })  # fmt: skip
    order = {grid_key(r): i for i, r in enumerate(table_recipes())}
    out.sort(key=lambda r: order.get(grid_key(r), 10**6))
    with TABLE_CSV.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    teacher_row = next(r for r in out if r["prune_method"] == "none" and r["bits"] == 32 and r["kd_steps"] == 0)
    catalog = prepared.catalog
    sidecar = {
        "table": TABLE_CSV.name,
        "rows": len(out),
        "complete": len(out) == len(table_recipes()),
        "task": config.task.name,
        "config": meta["config"],
        "matches_current_digits_yaml": matches,
        "grid": GRID,
        "grid_rules": "prune_ratio only when prune_method != none (none: ratio 0); kd_temperature only when kd_steps > 0 "
                      "(rows with kd_steps 0 carry the Recipe default 4.0, unused)",
        "fixed_knobs": {k: v for k, v in Recipe().model_dump().items() if k not in GRID and k != "version"},
        "recipe_seed": RECIPE_SEED,
        "teacher": {
            "val_quality": teacher_row["quality"], "test_quality": teacher_row["test_quality"],
            "n_val": teacher_row["quality_n"], "reference_throughput_sps": round(reference, 1),
            "reference_readings": len(teacher_readings),
            "reference_readings_min_max_sps": [round(min(teacher_readings), 1), round(max(teacher_readings), 1)],
            "checkpoint": meta["teacher_checkpoint"],  # the build's teacher, whichever this machine has now
        },
        "objective": config.objective.model_dump(mode="json"),
        "traffic": config.traffic.model_dump(mode="json"),
        "catalog": {"file": Path(catalog.path).name, "as_of": str(catalog.as_of), "region": catalog.region,
                    "instance_filter": config.deployment.instance_filter,
                    "usd_per_hour": {i.instance_type: i.on_demand_usd_per_hour for i in catalog.instances}},  # fmt: skip
        "measurement": {
            "threads": meta["threads"],
            "serving_batch_size": batch,
            "measure": f"orchestrator.measure.measure(batch_repeats={config.search.measure_batch_repeats}, "
                       f"latency_repeats={config.search.measure_latency_repeats}) per recipe: size, peak memory, FLOPs, latency",
            "throughput": f"interleaved_throughput over the teacher and the group's {len(GRID['bits'])} bit-widths, "
                          f"{meta['rounds']} rounds x {meta['repeats']} timed runs; throughput_sps = median per-round ratio to "
                          "the teacher x teacher_reference_sps (the median of every teacher reading of the build)",
            "batch_latency_p95_ms": f"batch / throughput_sps x {tail:.3f}, the median p95/p50 of batch latency over every "
                                    "measure() call of the build (the tail is the machine's noise, not the recipe's)",
            "batch_latency_tail_factor": round(tail, 4),
            "quality": "val accuracy (the search's objective); test_quality is the held-out split",
            "quality_seeds": {
                "distillation_seeds": [RECIPE_SEED, *extra_seeds],
                "rule": "a distilled row's quality and test_quality are the mean over these distillation seeds "
                        "(quality_seed0: the build's own seed); pruning and quantization take no seed, so an "
                        "undistilled row is the same under every seed and carries its one value",
                "file": QUALITY_SEEDS.name if extra_seeds else None,
            },
            "shared_prefix": "each (method, ratio, kd_steps, temperature) group is pruned and distilled once; each bit-width "
                             "quantizes a copy (apply_recipe's stages, split before the quantize step)",
            "shortcut_check": meta.get("shortcut_check"),
        },
        "machine": meta["machine"],
        "build_seconds": meta["build_seconds"],
        "built_with": "bench/search_efficiency.py --build-table",
    }
    TABLE_JSON.write_text(json.dumps(sidecar, indent=2) + "\n")
    print(f"{TABLE_CSV}: {len(out)} rows; teacher reference {reference:.0f} sps; tail factor {tail:.3f}; build {meta['build_seconds'] / 60:.1f} min")


def _seed_qualities(done: dict[str, dict]) -> tuple[list[int], dict[str, list[dict]]]:
    """The further distillation seeds measured for every distilled group, and each row's readings under them."""
    distilled = {name for name, g in done.items() if any(r["kd_steps"] for r in g["rows"])}
    lines = _read_jsonl(QUALITY_SEEDS)
    groups_of = lambda seed: {line["group"] for line in lines if line["seed"] == seed}  # noqa: E731
    seeds = sorted(s for s in {line["seed"] for line in lines} if groups_of(s) >= distilled)
    readings: dict[str, list[dict]] = {}
    for line in lines:
        if line["seed"] in seeds and line["group"] in distilled:
            for r in line["rows"]:
                readings.setdefault(r["recipe_key"], []).append(r)
    return seeds, readings


def _averaged_quality(row: dict, readings: list[dict]) -> dict:
    """quality and test_quality as the mean over the build's seed and the further ones; the build's own kept beside."""
    vals = [row["quality"], *(r["quality"] for r in readings)]
    tests = [row["test_quality"], *(r["test_quality"] for r in readings)]
    return {"quality": statistics.fmean(vals), "test_quality": statistics.fmean(tests), "quality_seeds": len(vals),
            "quality_seed0": row["quality"], "quality_min": min(vals), "quality_max": max(vals)}


def _knobs_of(row: dict) -> dict:
    knobs = {"prune_method": row["prune_method"], "prune_ratio": float(row["prune_ratio"]), "bits": int(row["bits"]),
             "kd_steps": int(row["kd_steps"])}  # fmt: skip
    if knobs["kd_steps"]:
        knobs["kd_temperature"] = float(row["kd_temperature"])
    return knobs


# --------------------------------------------------------------------------- searching the table


def load_table() -> tuple[list[dict], dict]:
    """The table's rows (numbers parsed) and its sidecar."""
    if not TABLE_CSV.is_file():
        raise SystemExit(f"{TABLE_CSV} is missing: build it once with --build-table")
    rows = []
    with TABLE_CSV.open() as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    row[k] = None
                elif k in ("feasible", "projected", "accelerated"):
                    row[k] = _bool(v)
                else:
                    try:
                        number = float(v)
                        row[k] = int(number) if k in ("bits", "kd_steps", "replicas", "params", "nonzero_params", "size_bytes",
                                                       "sparse_size_bytes", "peak_mem_bytes", "quality_n", "quality_seeds") else number  # fmt: skip
                    except ValueError:
                        row[k] = v
            rows.append(row)
    return rows, json.loads(TABLE_JSON.read_text())


def lookup_trial(config: dict, table: dict, baseline_quality: float, max_drop: float) -> None:
    """The benchmark's trainable: the recipe the searcher proposed, looked up instead of compressed.

    Reports what run_trial reports for a finished trial: the row, final=True, and
    the objective and constraint values ConstrainedOptunaSearch tells Optuna. It
    imports nothing of torch or the engine (a fresh actor per search would pay
    for that); the driver checks afterwards that each row it returned is the one
    the product's own recipe_from_config(...).key() names.
    """
    from ray import tune

    row = table[grid_key(config)]  # a KeyError here means the space offered a recipe the table lacks: a benchmark bug
    tune.report({**row, "baseline": bool(config.get("baseline", False)), **trial_result(row, baseline_quality, max_drop)})


def trial_result(row: dict, baseline_quality: float, max_drop: float) -> dict:
    """What a finished trial reports beside its row: final, the accuracy drop, and the objective and constraint
    values ConstrainedOptunaSearch tells Optuna."""
    drop = baseline_quality - row["quality"]
    return {"final": True, "accuracy_drop": drop, "objective_monthly_usd": row["objective_monthly_usd"],
            "constraint_quality": drop - max_drop, "constraint_cost": 0.0 if row["feasible"] else 1.0}  # fmt: skip


def _ordered_keys(study_name: str, storage_url: str, space: dict) -> list[str]:
    """The recipe key of each trial in the order Optuna proposed them, through the product's own DefineByRun."""
    import optuna

    from orchestrator.search.space import DefineByRun, recipe_from_config

    study = optuna.load_study(study_name=study_name, storage=optuna.storages.RDBStorage(storage_url))
    keys = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.COMPLETE:
            raise RuntimeError(f"{study_name}: trial {t.number} is {t.state.name}, expected COMPLETE")
        fixed = DefineByRun(space)(optuna.trial.FixedTrial(t.params, number=t.number))
        keys.append(recipe_from_config({**t.params, **fixed}, seed=0).key())
    return keys


def replay_search(table: dict[tuple, dict], sidecar: dict, sampler: str, seed: int, budget: int) -> list[str]:
    """The product's searcher without Ray: make_sampler, DefineByRun, the enqueued teacher and the same constraints.

    It asks and tells Optuna exactly as ConstrainedOptunaSearch does with one trial at
    a time, so a seed proposes the same recipes as on the Tuner (checked on the seeds
    both ran); it serves the many seeds a median over this noisy metric needs.
    """
    import optuna

    from orchestrator.search.searcher import CONSTRAINT_KEYS, METRICS, MODES, make_sampler
    from orchestrator.search.space import DefineByRun, baseline_point, recipe_from_config

    config = _search_config(sampler, seed, budget, base=sidecar["config"])
    teacher_q, max_drop = sidecar["teacher"]["val_quality"], sidecar["objective"]["max_quality_drop"]
    study = optuna.create_study(directions=[f"{m}imize" for m in MODES], sampler=make_sampler(config.space, config.search))
    if baseline_point(config.space):
        study.enqueue_trial(baseline_point(config.space))
    define = DefineByRun(config.space)
    keys = []
    for _ in range(budget):
        trial = study.ask()
        fixed = define(trial)  # before reading trial.params: it returns a copy of what was suggested so far
        knobs = {**trial.params, **fixed}
        row = table[grid_key(knobs)]
        result = {**row, **trial_result(row, teacher_q, max_drop)}
        for key in CONSTRAINT_KEYS:
            trial.set_constraint(key, result[key])
        study.tell(trial, [result[metric] for metric in METRICS])
        keys.append(recipe_from_config(knobs, seed=RECIPE_SEED).key())
    return keys


def run_replays(table: dict[tuple, dict], sidecar: dict, samplers: Sequence[str], seeds: Sequence[int], budget: int) -> list[dict]:
    """replay_search for every sampler and seed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = []
    for sampler in samplers:
        started = time.perf_counter()
        for seed in seeds:
            t0 = time.perf_counter()
            keys = replay_search(table, sidecar, sampler, seed, budget)
            runs.append({"sampler": sampler, "seed": seed, "budget": budget, "keys": keys, "fit_seconds": round(time.perf_counter() - t0, 2)})
        print(f"replay {sampler:6s}: {len(seeds)} seeds × {budget} trials in {time.perf_counter() - started:.0f}s", flush=True)
    return runs


@contextlib.contextmanager
def _ray_running() -> Iterator[None]:
    """Ray for the searches in the block: the caller's where one is running (a test's), else one of our own, shut down
    after the block."""
    import ray

    from orchestrator.search.local_ray import init_embedded_ray

    started = not ray.is_initialized()
    if started:
        init_embedded_ray(num_cpus=2)  # loopback only, token authentication on, as the product's own
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def run_searches(
    table: dict[str, dict], sidecar: dict, samplers: Sequence[str], seeds: Sequence[int], budgets: Sequence[int]
) -> list[dict]:
    """Every (sampler, seed, budget) search on the product's Tuner, one Ray for all; the recipes each proposed, in order."""
    import tempfile
    from collections import Counter

    from ray import tune

    from orchestrator.search.runner import RunPaths, _new_tuner

    if __name__ != "__main__":  # imported (tests, notebooks): Ray's workers cannot import bench/, so ship the code itself
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    teacher_q, max_drop = sidecar["teacher"]["val_quality"], sidecar["objective"]["max_quality_drop"]
    by_knobs = {grid_key(row): row for row in table.values()}
    trainable = tune.with_resources(
        tune.with_parameters(lookup_trial, table=by_knobs, baseline_quality=teacher_q, max_drop=max_drop), {"cpu": 1}
    )
    runs = []
    with _ray_running():
        for sampler in samplers:
            for seed in seeds:
                for budget in budgets:
                    config = _search_config(sampler, seed, budget, base=sidecar["config"])
                    with tempfile.TemporaryDirectory(prefix="hedgerow-se-") as tmp:
                        paths = RunPaths(Path(tmp))
                        meta = {"study_name": f"{sampler}-s{seed}-b{budget}", "tune_storage": tmp}
                        tuner = _new_tuner(trainable, config, paths, meta)
                        started = time.perf_counter()
                        results = tuner.fit()
                        wall = time.perf_counter() - started
                        if results.errors:
                            raise RuntimeError(f"{meta['study_name']}: {len(results.errors)} trials failed: {results.errors[0]}")
                        keys = _ordered_keys(meta["study_name"], paths.optuna_url, config.space)
                        reported = Counter(r.metrics["recipe_key"] for r in results)
                        if Counter(keys) != reported or len(keys) != budget:
                            raise RuntimeError(f"{meta['study_name']}: Optuna's trials and Ray's results disagree")
                    runs.append({"sampler": sampler, "seed": seed, "budget": budget, "keys": keys, "fit_seconds": round(wall, 2)})
                    print(f"{sampler:6s} seed {seed} budget {budget:2d}: {wall:5.1f}s, "
                          f"{len(set(keys))} distinct recipes", flush=True)  # fmt: skip
    return runs


def run_tuner_seeds(samplers: Sequence[str], seeds: Sequence[int], budget: int, shard: tuple[int, int] = (0, 1)) -> None:
    """The target's many-seed figure on the product's Tuner itself, not the replay: one budget-long search per
    (sampler, seed), appended to TUNER_SEEDS_RUNS as it finishes (resumable; k/n shards split the jobs)."""
    import fcntl

    from orchestrator.tasks.checkpoint import sha256_file

    rows, sidecar = load_table()
    table = {r["recipe_key"]: r for r in rows}
    table_sha256 = sha256_file(TABLE_CSV)  # a run's proposals follow the table's values: evaluate checks it is this one
    done = {(r["sampler"], r["seed"]) for r in _read_jsonl(TUNER_SEEDS_RUNS) if r["budget"] == budget}
    jobs = [(sampler, seed) for seed in seeds for sampler in samplers if (sampler, seed) not in done]
    k, n = shard
    if not jobs[k::n]:
        return
    with _ray_running():  # one Ray for all of this shard's searches
        for sampler, seed in jobs[k::n]:
            (run,) = run_searches(table, sidecar, [sampler], [seed], [budget])
            TUNER_SEEDS_RUNS.parent.mkdir(parents=True, exist_ok=True)
            with TUNER_SEEDS_RUNS.open("a") as fh:  # shards append to one file: one locked write per run
                fcntl.flock(fh, fcntl.LOCK_EX)
                fh.write(json.dumps({**run, "table_sha256": table_sha256}) + "\n")
                fh.flush()
                fcntl.flock(fh, fcntl.LOCK_UN)


def evaluate_tuner_seeds(samplers: Sequence[str], seeds: Sequence[int], budget: int) -> Path | None:
    """Trials to 95% over many seeds from the Tuner's own runs, the target from them, and the replay checked against
    every one of them; written to bench/results/search_efficiency_tuner_seeds.json once every run is in."""
    from _common import machine, write

    from orchestrator.tasks.checkpoint import sha256_file

    rows, sidecar = load_table()
    wanted = {(sampler, seed) for sampler in samplers for seed in seeds}
    by_job = {(r["sampler"], r["seed"]): r for r in _read_jsonl(TUNER_SEEDS_RUNS) if r["budget"] == budget}
    if {r["table_sha256"] for r in by_job.values()} - {sha256_file(TABLE_CSV)}:
        raise SystemExit(f"{TUNER_SEEDS_RUNS} holds runs searched against another {TABLE_CSV.name} than this one: "
                         "delete it and run --tuner-seeds again")  # fmt: skip
    missing = sorted(wanted - set(by_job))
    if missing:
        print(f"{len(wanted) - len(missing)} of {len(wanted)} Tuner runs done; waiting for {len(missing)} more", flush=True)
        return None
    runs = [by_job[(sampler, seed)] for sampler in samplers for seed in seeds]
    result = evaluate_runs(rows, sidecar, runs)
    started = time.perf_counter()
    by_knobs = {grid_key(row): row for row in rows}
    replay_runs = run_replays(by_knobs, sidecar, samplers, seeds, budget)
    replay_seconds = time.perf_counter() - started
    payload = {
        "benchmark": "search_efficiency_tuner_seeds",
        "what": f"trials to {TARGET_FRACTION:.0%} of the table's full hypervolume over {len(seeds)} seeds, every run on the "
                "product's Tuner (the same path as search_efficiency.json's runs, budget-long searches only), and the "
                "replay without Ray compared with each of them",
        "table": {"file": f"bench/data/{TABLE_CSV.name}", "rows": len(rows), "measured_on": sidecar["machine"]},
        "budget": budget,
        "seeds": list(seeds),
        "targets": {"target": "best <= 0.5 x random (median trials to 95% of the full hypervolume)",
                    **_target_from(result["searchers"], len(seeds), f"the product's Tuner, budget-{budget} runs")},
        "reference_point": result["reference_point"],
        "full_hypervolume": result["full_hypervolume"],
        "full_front": result["full_front"],
        "searchers": {k: {"trials_to_95pct": v["trials_to_95pct"], "trials_to_cheapest_feasible": v["trials_to_cheapest_feasible"]}
                      for k, v in result["searchers"].items()},
        "replay_matches_tuner": _compare_replay(runs, replay_runs),
        "replay_seconds": round(replay_seconds, 1),
        "tuner_fit_seconds": {s: round(sum(r["fit_seconds"] for r in runs if r["sampler"] == s), 1) for s in samplers},
        "runs_file": f"bench/results/{TUNER_SEEDS_RUNS.name}",
        "machine": machine(),
    }  # fmt: skip
    return write("search_efficiency_tuner_seeds", payload)


def evaluate_runs(rows: list[dict], sidecar: dict, runs: list[dict]) -> dict:
    """Hypervolumes, trials to 95% of the full front, and cheapest $ within the bound against the hand-built chain."""
    teacher_q = sidecar["teacher"]["val_quality"]
    max_drop = sidecar["objective"]["max_quality_drop"]
    n_val = sidecar["teacher"]["n_val"]
    by_key = {r["recipe_key"]: r for r in rows}
    feasible = [r for r in rows if is_feasible(r, teacher_q, max_drop)]
    ref = (teacher_q - max_drop - 1.0 / n_val, math.log10(max(r["monthly_usd"] for r in feasible)) + COST_MARGIN_LOG10)
    point = lambda r: (r["quality"], math.log10(r["monthly_usd"])) if is_feasible(r, teacher_q, max_drop) else None  # noqa: E731
    full = hypervolume_2d([point(r) for r in feasible], ref)
    target = TARGET_FRACTION * full
    lookup = {grid_key(r): r for r in rows}
    chains = {f"{m}_{pick}": sequential_chain(lookup, GRID, teacher_q, max_drop, m, pick)
              for m in ("structured", "unstructured") for pick in ("fewest", "cheapest")}  # fmt: skip
    # The chain: highest ratio, then fewest bits, then distillation, then the instance. Structured pruning is
    # the method that speeds a dense CPU model up; the unstructured and cost-aware variants are reported beside it.
    chain = chains["structured_fewest"]
    best_chain = min((c for c in chains.values() if c["monthly_usd"] is not None), key=lambda c: c["monthly_usd"])

    per_run = []
    for run in runs:
        trial_rows = [by_key[k] for k in run["keys"]]
        curve = hypervolume_curve([point(r) for r in trial_rows], ref)
        cheapest, best = [], math.inf
        for r in trial_rows:
            if is_feasible(r, teacher_q, max_drop):
                best = min(best, r["monthly_usd"])
            cheapest.append(None if best == math.inf else best)
        distinct = [len(set(run["keys"][: i + 1])) for i in range(len(run["keys"]))]
        per_run.append({**{k: run[k] for k in ("sampler", "seed", "budget", "fit_seconds")}, "hv_curve": curve,
                        "cheapest_usd_curve": cheapest, "distinct_curve": distinct, "keys": run["keys"]})  # fmt: skip

    samplers = list(dict.fromkeys(r["sampler"] for r in per_run))
    budgets = sorted({r["budget"] for r in per_run})
    longest = max(budgets)
    summary: dict[str, Any] = {}
    for sampler in samplers:
        mine = [r for r in per_run if r["sampler"] == sampler]
        at_budget = {}
        for b in budgets:
            finals = [r for r in mine if r["budget"] == b]
            hv = [r["hv_curve"][-1] for r in finals]
            cheap = [r["cheapest_usd_curve"][-1] for r in finals]
            ratio = [c / chain["monthly_usd"] if c is not None else None for c in cheap]
            ratio_best = [c / best_chain["monthly_usd"] if c is not None else None for c in cheap]
            at_budget[str(b)] = {
                "hypervolume_median": _r(median_or_none(hv)), "hypervolume_min": _r(min(hv)), "hypervolume_max": _r(max(hv)),
                "fraction_of_full_median": _r(median_or_none(hv) / full), "fraction_of_full_min": _r(min(hv) / full),
                "fraction_of_full_max": _r(max(hv) / full),
                "cheapest_usd_within_bound_median": median_or_none(cheap), "cheapest_usd_within_bound_per_seed": cheap,
                "vs_chain_ratio_median": _r(median_or_none(ratio)), "vs_chain_ratio_per_seed": [_r(x) for x in ratio],
                "vs_best_chain_variant_ratio_median": _r(median_or_none(ratio_best)),
                "distinct_recipes_median": statistics.median(r["distinct_curve"][-1] for r in finals),
                "trials_to_95pct_within_this_budget_per_seed": [trials_to_reach(r["hv_curve"], target) for r in finals],
                "fit_seconds_median": statistics.median(r["fit_seconds"] for r in finals),
            }  # fmt: skip
        long_runs = [r for r in mine if r["budget"] == longest]
        reach = [trials_to_reach(r["hv_curve"], target) for r in long_runs]
        counted = [x if x is not None else longest + 1 for x in reach]
        med = statistics.median(counted)
        distinct_at = [r["distinct_curve"][x - 1] if x is not None else None for r, x in zip(long_runs, reach)]
        table_min = min(r["monthly_usd"] for r in feasible)
        found = [next((i + 1 for i, c in enumerate(r["cheapest_usd_curve"]) if c is not None and c <= table_min + 1e-9), None)
                 for r in long_runs]  # fmt: skip
        found_counted = [x if x is not None else longest + 1 for x in found]
        summary[sampler] = {
            "at_budget": at_budget,
            "trials_to_95pct": {
                "per_seed": reach, "reached": sum(x is not None for x in reach), "of": len(reach),
                "median": med if med <= longest else None, "median_counting_not_reached_as": longest + 1,
                "median_counted": med,
                "distinct_recipes_at_reach_median": median_or_none(distinct_at),
            },
            "trials_to_cheapest_feasible": {
                "per_seed": found, "reached": sum(x is not None for x in found), "of": len(found),
                "median_counted": statistics.median(found_counted),
                "note": f"trials until the table's cheapest feasible $ (${table_min:,.2f}) is found; not found = {longest + 1}",
            },
        }  # fmt: skip
    return {
        "reference_point": {"quality": ref[0], "log10_monthly_usd": ref[1], "monthly_usd": 10 ** ref[1],
                            "rule": "quality: the bound (teacher val − max_quality_drop) minus one validation example; "
                                    f"cost: log10 of the dearest feasible row's $ + {COST_MARGIN_LOG10}"},  # fmt: skip
        "seeds": sorted({r["seed"] for r in per_run}),
        "need_budget": longest,
        "full_hypervolume": full,
        "full_front": [
            {"quality": q, "monthly_usd": round(10**c, 2), **{k: v for k, v in _brief(next(r for r in feasible if (r["quality"], math.log10(r["monthly_usd"])) == (q, c))).items() if k not in ("quality", "monthly_usd")}}
            for q, c in pareto_front([point(r) for r in feasible])
        ],  # fmt: skip
        "target_hypervolume": target,
        "feasible_rows": len(feasible),
        "cheapest_feasible_usd_in_table": min(r["monthly_usd"] for r in feasible),
        "chain": chain,
        "chain_variants": chains,
        "searchers": summary,
        "runs": per_run,
    }


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _target_from(searchers: dict, seeds: int, source: str) -> dict:
    """best searcher's median trials to 95% against random's, from one set of runs."""
    random_n = searchers["random"]["trials_to_95pct"]["median_counted"]
    others = {k: v["trials_to_95pct"]["median_counted"] for k, v in searchers.items() if k != "random"}
    best = min(others, key=others.get)
    note = ""
    if searchers["random"]["trials_to_95pct"]["median"] is None:
        note = (f"random's median did not reach 95% within {searchers['random']['trials_to_95pct']['median_counting_not_reached_as'] - 1} "
                "trials and is counted as budget+1, so its true figure is higher and the ratio is an upper bound")  # fmt: skip
    out = {
        "source": source, "seeds": seeds, "best_searcher": best, "best_median_trials_to_95pct": others[best],
        "random_median_trials_to_95pct": random_n, "ratio_best_to_random": round(others[best] / random_n, 3),
        "met": others[best] <= 0.5 * random_n and searchers[best]["trials_to_95pct"]["median"] is not None, "note": note,
    }  # fmt: skip
    mine, theirs = searchers[best]["trials_to_95pct"].get("per_seed"), searchers["random"]["trials_to_95pct"].get("per_seed")
    if mine and theirs and len(mine) >= 10:
        out["spread"] = ratio_spread(mine, theirs, searchers["random"]["trials_to_95pct"]["median_counting_not_reached_as"])
    return out


def ratio_spread(best: Sequence[int | None], random_: Sequence[int | None], not_reached_as: int, draws: int = 10_000) -> dict:
    """How firm a ratio of medians over many seeds is: a seed-bootstrap 95% interval, and how many disjoint sets of
    5 seeds (the issue's protocol) would each meet the target on their own."""
    import random as _random

    b = [x if x is not None else not_reached_as for x in best]
    r = [x if x is not None else not_reached_as for x in random_]
    rng = _random.Random(0)
    ratios = sorted(statistics.median(rng.choices(b, k=len(b))) / statistics.median(rng.choices(r, k=len(r))) for _ in range(draws))
    sets = [(statistics.median(b[i : i + 5]), statistics.median(r[i : i + 5])) for i in range(0, min(len(b), len(r)) - 4, 5)]
    return {
        "bootstrap_ci95": [round(ratios[int(0.025 * draws)], 3), round(ratios[int(0.975 * draws) - 1], 3)],
        "bootstrap_draws": draws,
        "five_seed_sets": len(sets),
        "five_seed_sets_meeting_target": sum(x <= 0.5 * y and x < not_reached_as for x, y in sets),
        "five_seed_set_ratios": [round(x / y, 3) for x, y in sets],
    }


def check_targets(result: dict, replay: dict | None = None) -> dict:
    """The issue's target: the best searcher needs at most half the trials random search needs to reach 95%.

    Judged on the Tuner runs (the issue's 5 seeds) and, where run, on the replay's many
    seeds: with 5 seeds a median of this metric moves by a factor of two from one set of
    seeds to the next, so the replay's figure is the one to trust. With many seeds, `spread`
    says how firm it is: a seed-bootstrap interval of the ratio, and how many disjoint sets
    of 5 seeds would meet the target on their own.
    """
    if "random" not in result["searchers"]:
        return {"met": None, "why": "random search was not run"}
    out = {"target": "best <= 0.5 x random (median trials to 95% of the full hypervolume)",
           "tuner": _target_from(result["searchers"], len(result["seeds"]), "the product's Tuner, budget-"
                                 f"{result['need_budget']} runs")}  # fmt: skip
    if replay and "random" in replay["searchers"]:
        out["replay"] = _target_from(replay["searchers"], len(replay["seeds"]), "replay without Ray, same searcher objects")
    out["met"] = out["replay"]["met"] if "replay" in out else out["tuner"]["met"]
    return out


def plot(result: dict, path: Path, replay_reach: dict[str, list[int | None]] | None = None) -> None:
    """Hypervolume (fraction of the full front) and cheapest $ within the bound vs trials; with a replay, the
    share of its seeds that reached 95% by each trial (where a searcher's line crosses 0.5 is its median)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    full = result["full_hypervolume"]
    runs = result["runs"]
    longest = max(r["budget"] for r in runs)
    fig, axes = plt.subplots(1, 3 if replay_reach else 2, figsize=(19 if replay_reach else 13, 5))
    ax, bx = axes[0], axes[1]
    proposals = {s: [r["keys"] for r in runs if r["sampler"] == s] for s in result["searchers"]}
    styles = ["-", "--", ":", "-.", (0, (5, 1))]
    for i, sampler in enumerate(result["searchers"]):
        color, style = f"C{i}", styles[i % len(styles)]
        twin = next((s for s in result["searchers"] if s != sampler and s == "random" and proposals[s] == proposals[sampler]), None)
        name = f"{sampler} (proposes exactly what {twin} does)" if twin else sampler
        long_runs = [r for r in runs if r["sampler"] == sampler and r["budget"] == longest]
        curves = [[v / full for v in r["hv_curve"]] for r in long_runs]
        x = list(range(1, longest + 1))
        med = [statistics.median(c[j] for c in curves) for j in range(longest)]
        ax.plot(x, med, color=color, ls=style, lw=2 if twin is None else 1.5, label=f"{name}, budget {longest}, median of {len(curves)} seeds")
        ax.fill_between(x, [min(c[j] for c in curves) for j in range(longest)], [max(c[j] for c in curves) for j in range(longest)],
                        color=color, alpha=0.15)  # fmt: skip
        for b, stats in result["searchers"][sampler]["at_budget"].items():
            if int(b) == longest:
                continue
            ax.errorbar(int(b) + (i - 2) * 0.25, stats["fraction_of_full_median"],
                        yerr=[[stats["fraction_of_full_median"] - stats["fraction_of_full_min"]], [stats["fraction_of_full_max"] - stats["fraction_of_full_median"]]],
                        fmt="o", color=color, ms=4, capsize=2)  # fmt: skip
        costs = [[c if c is not None else math.nan for c in r["cheapest_usd_curve"]] for r in long_runs]
        cmed = [statistics.median(c[j] for c in costs) if all(not math.isnan(c[j]) for c in costs) else math.nan for j in range(longest)]
        bx.plot(x, cmed, color=color, ls=style, label=name)
    ax.axhline(TARGET_FRACTION, color="grey", ls="--", lw=1)
    ax.text(1, TARGET_FRACTION + 0.01, f"{TARGET_FRACTION:.0%} of the table's full front", color="grey", fontsize=8)
    ax.set_xlabel("trials (trial 1 is the teacher)")
    ax.set_ylabel("hypervolume / full hypervolume")
    others = ", ".join(str(b) for b in sorted({r["budget"] for r in runs}) if b != longest)
    ax.set_title(f"Pareto hypervolume (val accuracy up, log10 $/month down)\nlines: budget-{longest} runs, band min–max; dots: separate budget-{others} runs")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    chain = result["chain"]
    bx.axhline(chain["monthly_usd"], color="black", ls=":", lw=1)
    bx.plot([chain["evaluations"]], [chain["monthly_usd"]], "k*", ms=10, label=f"hand-built chain, fewest bits ({chain['evaluations']} evaluations)")
    aware = result.get("chain_variants", {}).get("structured_cheapest")
    if aware and aware["monthly_usd"] is not None:
        bx.plot([aware["evaluations"]], [aware["monthly_usd"]], "kP", ms=8, label=f"hand-built chain, cheapest bits ({aware['evaluations']} evaluations)")
    bx.axhline(result["cheapest_feasible_usd_in_table"], color="grey", ls="--", lw=1)
    bx.set_yscale("log")
    bx.set_xlabel("trials")
    bx.set_ylabel("cheapest $/month within the quality bound (median over seeds)")
    bx.set_title("cheapest feasible candidate found so far\n(dashed: the table's cheapest feasible row)")
    bx.legend(fontsize=8)
    if replay_reach:
        cx = axes[2]
        for i, (sampler, reach) in enumerate(replay_reach.items()):
            n_seeds = max(len(reach), 1)
            x = list(range(1, result["need_budget"] + 1))
            cx.step(x, [sum(r is not None and r <= t for r in reach) / n_seeds for t in x], where="post",
                    color=f"C{list(result['searchers']).index(sampler) if sampler in result['searchers'] else i}",
                    ls=styles[i % len(styles)], label=f"{sampler} ({len(reach)} seeds)")  # fmt: skip
        cx.axhline(0.5, color="grey", ls="--", lw=1)
        cx.set_xlabel("trials")
        cx.set_ylabel(f"share of seeds at {TARGET_FRACTION:.0%} of the full hypervolume")
        cx.set_title("replay without Ray, same searcher objects\n(a line crosses 0.5 at its median trials to 95%)")
        cx.set_ylim(0, 1)
        cx.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-table", action="store_true", help="(re)build bench/data/digits_table.csv from real evaluations (16-23 min)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per group when building")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model per round when building")
    parser.add_argument("--threads", type=int, default=None, help="threads to measure with (default: digits.yaml's resources_per_trial.cpu)")
    parser.add_argument("--no-check", action="store_true", help="skip comparing the shared-prefix build with apply_recipe")
    parser.add_argument("--resume", action="store_true", help="with --build-table: keep groups already in the raw file")
    parser.add_argument("--reprice", action="store_true", help="re-derive the table from the raw measurements (no model runs)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma list of {', '.join(SAMPLERS)}")
    parser.add_argument("--need-budget", type=int, default=NEED_BUDGET, help="trials in the runs that measure trials to 95%%")
    parser.add_argument("--replay-seeds", type=int, default=60, help="seeds for the replay without Ray (0: no replay)")
    parser.add_argument("--replay-samplers", default=",".join(REPLAY_SAMPLERS), help="samplers to replay")
    parser.add_argument("--quality-seeds", default=None, help="measure only the further distillation seeds whose val/test quality "
                        "the table averages (comma list, e.g. 1,2,3,4; --build-table does this itself); then --reprice")
    parser.add_argument("--tuner-seeds", type=int, default=0, help="only run the budget-long searches of --replay-samplers for "
                        "this many seeds on the Tuner, resumably, and write search_efficiency_tuner_seeds.json (~80 min for 60)")
    parser.add_argument("--shard", default="0/1", help="with --quality-seeds or --tuner-seeds: k/n, this process's share of the jobs")
    args = parser.parse_args()
    try:
        quality_seeds = [int(x) for x in args.quality_seeds.split(",")] if args.quality_seeds else []
    except ValueError:
        parser.error(f"--quality-seeds wants integers like 1,2,3,4, got {args.quality_seeds!r}")
    try:
        shard = tuple(int(x) for x in args.shard.split("/"))
    except ValueError:
        shard = ()
    if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
        parser.error(f"--shard wants k/n with 0 <= k < n, like 0/2, got {args.shard!r}")
    if quality_seeds:
        build_quality_seeds(quality_seeds, shard)
        return
    if args.build_table:
        build_table(args.rounds, args.repeats, args.threads, check=not args.no_check, resume=args.resume)
        return
    if args.reprice:
        write_table()
        return
    samplers = [x.strip() for x in args.samplers.split(",") if x.strip()]
    replay_samplers = [x.strip() for x in args.replay_samplers.split(",") if x.strip()]
    for flag, names in (("--samplers", samplers), ("--replay-samplers", replay_samplers)):
        unknown = set(names) - set(SAMPLERS)
        if unknown:
            parser.error(f"{flag}: unknown {sorted(unknown)}; choose from {', '.join(SAMPLERS)}")
    if args.tuner_seeds:
        if "random" not in replay_samplers:
            parser.error("--tuner-seeds judges the target against random search: keep random in --replay-samplers")
        seeds = list(range(args.tuner_seeds))
        run_tuner_seeds(replay_samplers, seeds, args.need_budget, shard)
        if shard[1] > 1:  # shards finish in any order: one unsharded call afterwards writes the figures, once
            print("shard done; run again without --shard to write bench/results/search_efficiency_tuner_seeds.json", flush=True)
            return
        path = evaluate_tuner_seeds(replay_samplers, seeds, args.need_budget)
        if path:
            print(path, json.loads(path.read_text())["targets"])
        return
    budgets = sorted({*BUDGETS, args.need_budget})
    from _common import machine, write

    rows, sidecar = load_table()
    table = {r["recipe_key"]: r for r in rows}
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    runs = run_searches(table, sidecar, samplers, seeds, budgets)  # starts and stops its own Ray
    run_seconds = time.perf_counter() - started
    result = evaluate_runs(rows, sidecar, runs)
    replay, replay_seconds, replay_reach = None, 0.0, None
    if args.replay_seeds:
        started = time.perf_counter()
        by_knobs = {grid_key(row): row for row in rows}
        replay_runs = run_replays(by_knobs, sidecar, replay_samplers, list(range(args.replay_seeds)), args.need_budget)
        replay_seconds = time.perf_counter() - started
        replay = evaluate_runs(rows, sidecar, replay_runs)
        replay["matches_tuner"] = _compare_replay(runs, replay_runs)
        replayed = replay.pop("runs")
        replay_reach = {sampler: [trials_to_reach(r["hv_curve"], replay["target_hypervolume"]) for r in replayed if r["sampler"] == sampler]
                        for sampler in replay["searchers"]}  # fmt: skip
        for sampler, summary in replay["searchers"].items():
            curves = [r["hv_curve"] for r in replayed if r["sampler"] == sampler]
            summary["fraction_of_full_median_within_the_run_at"] = {
                str(b): _r(statistics.median(c[b - 1] for c in curves) / replay["full_hypervolume"]) for b in BUDGETS}
    targets = check_targets(result, replay)
    payload = {
        "benchmark": "search_efficiency",
        "task": "digits",
        "table": {"file": f"bench/data/{TABLE_CSV.name}", "rows": len(rows), "grid": sidecar["grid"],
                  "teacher_val_quality": sidecar["teacher"]["val_quality"], "max_quality_drop": sidecar["objective"]["max_quality_drop"],
                  "traffic": sidecar["config"]["traffic"], "measured_on": sidecar["machine"], "build_seconds": sidecar["build_seconds"]},  # fmt: skip
        "setup": "each run is orchestrator.search.runner._new_tuner (ConstrainedOptunaSearch, DefineByRun space of exactly the "
                 "table's grid values as Choices, numeric ones searched by position, sampler from searcher.make_sampler with the budget as settings.trials, "
                 "ConcurrencyLimiter max_concurrent=1, reuse_actors=True) on one ray.init(num_cpus=2); the trainable looks "
                 "the proposed knobs up in the table and reports the row with final=True, quality, objective_monthly_usd, "
                 "constraint_quality, constraint_cost; afterwards the driver checks every reported row against the product's "
                 "recipe_from_config(...).key() of the Optuna trial's parameters. Trial 1 is always the teacher. Each budget "
                 "is a separate search (the product sizes TPE/GP start-up and the NSGA-II population from the budget). A "
                 "repeated recipe counts as a trial (Tune runs it); distinct recipes are reported beside it.",
        "quality": "val accuracy; feasible = accuracy drop <= max_quality_drop and a feasible instance",
        "budgets": budgets,
        "targets": targets,
        **{k: v for k, v in result.items() if k != "runs"},
        "replay": None if replay is None else {
            "what": "the same searcher objects (make_sampler, DefineByRun, the enqueued teacher, the same constraint and "
                    "objective values) asked and told one trial at a time without Ray, for more seeds than the Tuner runs "
                    "afford; matches_tuner compares its proposals with the Tuner's on the seeds both ran",
            "seeds": replay["seeds"], "budget": args.need_budget, "matches_tuner": replay["matches_tuner"],
            "searchers": {k: {"trials_to_95pct": v["trials_to_95pct"], "trials_to_cheapest_feasible": v["trials_to_cheapest_feasible"],
                              "fraction_of_full_median_within_the_run_at": v["fraction_of_full_median_within_the_run_at"]}
                          for k, v in replay["searchers"].items()},
            "seconds": round(replay_seconds, 1),
        },  # fmt: skip
        "runs": result["runs"],
        "run_seconds": round(run_seconds, 1),
        "machine": machine(),
    }
    path = write("search_efficiency", payload)
    plot(result, PLOT, replay_reach)
    print(path, PLOT)
    _print_summary(result, targets, replay)


def _compare_replay(tuner_runs: list[dict], replay_runs: list[dict]) -> dict:
    """How many (sampler, seed) runs of the replay proposed exactly the Tuner's recipes, in order."""
    tuner = {(r["sampler"], r["seed"], r["budget"]): r["keys"] for r in tuner_runs}
    both = [(r, tuner[(r["sampler"], r["seed"], r["budget"])]) for r in replay_runs if (r["sampler"], r["seed"], r["budget"]) in tuner]
    return {"compared": len(both), "identical": sum(r["keys"] == keys for r, keys in both),
            "differing": [f"{r['sampler']} seed {r['seed']}" for r, keys in both if r["keys"] != keys]}  # fmt: skip


def _print_summary(result: dict, targets: dict, replay: dict | None) -> None:
    chain = result["chain"]
    print(f"full hypervolume {result['full_hypervolume']:.5f}; chain ${chain['monthly_usd']:,.2f} in {chain['evaluations']} evaluations")
    for sampler, s in result["searchers"].items():
        parts = [f"b{b}: hv {v['fraction_of_full_median']:.3f} ${v['cheapest_usd_within_bound_median'] or float('nan'):,.0f} "
                 f"(x{v['vs_chain_ratio_median'] if v['vs_chain_ratio_median'] is not None else float('nan'):.2f} chain)"
                 for b, v in s["at_budget"].items()]  # fmt: skip
        t = s["trials_to_95pct"]
        print(f"{sampler:6s} to95 {t['median_counted']} ({t['reached']}/{t['of']} reached)  " + "  ".join(parts))
    if replay:
        for sampler, s in replay["searchers"].items():
            t = s["trials_to_95pct"]
            print(f"replay {sampler:6s} to95 {t['median_counted']} ({t['reached']}/{t['of']} reached), "
                  f"cheapest in {s['trials_to_cheapest_feasible']['median_counted']}")
        print("replay matches the Tuner:", replay["matches_tuner"])
    print("targets:", targets)


if __name__ == "__main__":
    main()
