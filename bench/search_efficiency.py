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
  product's own Tuner (`orchestrator.search.runner.new_tuner`: ConstrainedOptunaSearch
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
import json
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

# The jobs live in their own modules; this one is the command line, and re-exports what other benchmarks and the
# tests use.
from _search_figures import _compare_replay, _print_summary, _r, check_targets, evaluate_runs, plot, ratio_spread  # noqa: E402
from _search_grid import (  # noqa: E402
    BUDGETS,
    COST_MARGIN_LOG10,
    NEED_BUDGET,
    REPLAY_SAMPLERS,
    SAMPLERS,
    TABLE_CSV,
    grid_key,
    hypervolume_2d,
    hypervolume_curve,
    pareto_front,
    sequential_chain,
    table_recipes,
    trials_to_reach,
)
from _search_runs import evaluate_tuner_seeds, load_table, replay_search, run_replays, run_searches, run_tuner_seeds  # noqa: E402
from _search_table import build_quality_seeds, build_table, write_table  # noqa: E402

__all__ = [
    "COST_MARGIN_LOG10", "check_targets", "evaluate_runs", "evaluate_tuner_seeds", "grid_key", "hypervolume_2d",
    "hypervolume_curve", "load_table", "main", "pareto_front", "ratio_spread", "replay_search", "run_replays",
    "run_searches", "run_tuner_seeds", "sequential_chain", "table_recipes", "trials_to_reach",
]  # fmt: skip

PLOT = BENCH / "results" / "search_efficiency.png"


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
        "setup": "each run is orchestrator.search.runner.new_tuner (ConstrainedOptunaSearch, DefineByRun space of exactly the "
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


if __name__ == "__main__":
    main()
