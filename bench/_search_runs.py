"""Searching the table: each searcher on the product's Tuner, the replay without Ray, and the resumable
many-seed Tuner runs (`--tuner-seeds`)."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from _search_figures import _compare_replay, _target_from, evaluate_runs
from _search_grid import (
    BENCH,
    RECIPE_SEED,
    TABLE_CSV,
    TABLE_JSON,
    TARGET_FRACTION,
    _bool,
    _read_jsonl,
    _search_config,
    grid_key,
)

TUNER_SEEDS_RUNS = BENCH / "results" / "search_efficiency_tuner_seeds.runs.jsonl"  # --tuner-seeds: one Tuner run per line


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
    """The product's searcher without Ray: make_sampler, DefineByRun, the enqueued teacher and seeds, the same constraints.

    It asks and tells Optuna exactly as ConstrainedOptunaSearch does with one trial at
    a time, so a seed proposes the same recipes as on the Tuner (checked on the seeds
    both ran); it serves the many seeds a median over this noisy metric needs.
    """
    import optuna

    from orchestrator.search.searcher import CONSTRAINT_KEYS, METRICS, MODES, enqueued_points, make_sampler
    from orchestrator.search.space import DefineByRun, recipe_from_config

    config = _search_config(sampler, seed, budget, base=sidecar["config"])
    teacher_q, max_drop = sidecar["teacher"]["val_quality"], sidecar["objective"]["max_quality_drop"]
    study = optuna.create_study(directions=[f"{m}imize" for m in MODES], sampler=make_sampler(config.space, config.search))
    for point in enqueued_points(config.space, config.search):  # the teacher, then the seeds, as make_searcher
        study.enqueue_trial(point)
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

    from orchestrator.search.runner import RunPaths, new_tuner

    from ray import cloudpickle

    for module in (__name__, grid_key.__module__):  # Ray's workers cannot import bench/: ship the trainable's code itself
        cloudpickle.register_pickle_by_value(sys.modules[module])
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
                        tuner = new_tuner(trainable, config, paths, meta)
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
