"""How much of a candidate's in-process throughput survives being served? The capacity factor per runtime.

1. A short digits demo search (search_spaces/digits.yaml, --trials, default 9: the teacher and the seeded int8
   candidates on each runtime the space searches) is run, or an existing run folder is read (--run).
2. For each runtime, the trial it is measured on: the recommended one where it runs that runtime, else that runtime's
   cheapest feasible trial within the quality bound (else its best finished trial).
3. Each is load-tested exactly as `hedgerow loadtest RUN_DIR --trial ID` does (exported into RUN_DIR/exports/, one Ray
   Serve replica on 127.0.0.1 with the trial's threads and serving batch, open-loop Poisson arrivals from Locust in a
   process of its own), with the ramp: 0.5x, 1x, 1.5x, 2x of the promised rate, halving below 0.5x until a rate holds.
4. capacity_factor = the samples/s the replica sustained within the SLO / the in-process samples/s the cost model
   priced (the trial's throughput_sps). Below 1: the cost model over-counts what one served replica carries.

Writes bench/results/server_capacity.json. The load generator, Ray's proxy and the replica share this machine's cores,
so the factor is this machine's; rerun it where the fleet runs.

Run: `.venv/bin/python bench/server_capacity.py [--run DIR] [--trials 9] [--duration 5] [--examples-per-request 1,128]`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(REPO))
CONFIG = REPO / "search_spaces" / "digits.yaml"


def run_demo(trials: int) -> Path:
    """A short demo search into a temporary folder; its run folder."""
    folder = Path(tempfile.mkdtemp(prefix="hedgerow-server-capacity-"))
    done = subprocess.run([sys.executable, "-m", "orchestrator", "search", str(CONFIG), "--trials", str(trials), "--out", str(folder)],
                          cwd=REPO, capture_output=True, text=True, check=True)  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1])


def trials_per_runtime(run_dir: Path) -> dict[str, dict[str, Any]]:
    """{runtime: the trial to load-test and why}: the recommended trial for its runtime, else the cheapest feasible
    trial within the bound, else the best finished one."""
    from orchestrator.deploy.runfolder import open_run

    run = open_run(run_dir)
    frame = run.trials[run.trials["status"] == "finished"].copy()
    recommended = run.summary.recommended.trial_id if run.summary.recommended else None
    bound = run.summary.max_quality_drop
    chosen: dict[str, dict[str, Any]] = {}
    for runtime, rows in frame.groupby("runtime"):
        rows = rows.assign(trial_id=rows["trial_id"].astype(str))
        if recommended in set(rows["trial_id"]):
            chosen[str(runtime)] = {"trial_id": recommended, "why": "the run's recommendation"}
            continue
        within = rows[(rows["feasible"] == True) & (rows["quality_drop"] <= bound)]  # noqa: E712  (pandas)
        if len(within):
            best = within.sort_values(["monthly_usd", "trial_id"]).iloc[0]
            chosen[str(runtime)] = {"trial_id": best["trial_id"], "why": "its cheapest feasible trial within the bound"}
        else:
            best = rows.sort_values(["quality_drop", "trial_id"]).iloc[0]
            chosen[str(runtime)] = {"trial_id": best["trial_id"], "why": "its best finished trial (none within the bound)"}
    return chosen


def main() -> None:
    from _common import machine, write

    from orchestrator.loadtest.runner import loadtest, settings_of, summary_lines

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a finished demo run folder (default: run a short demo search now)")
    parser.add_argument("--trials", type=int, default=9, help="trials of the demo search (default 9)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of arrivals per rate (default 5)")
    parser.add_argument("--examples-per-request", default="1", help="comma-separated: a load test for each (default 1)")
    args = parser.parse_args()
    started = time.perf_counter()
    run_dir = args.run.resolve() if args.run else run_demo(args.trials)
    per_runtime = trials_per_runtime(run_dir)
    results: dict[str, Any] = {}
    for runtime, choice in sorted(per_runtime.items()):
        for k in (int(x) for x in args.examples_per_request.split(",")):
            settings = settings_of(duration_s=args.duration, ramp=True, examples_per_request=k)
            record, path = loadtest(str(run_dir), trial_id=choice["trial_id"], settings=settings,
                                    progress=lambda m: print(f"[{runtime}] {m}", file=sys.stderr, flush=True))  # fmt: skip
            print("\n".join(summary_lines(record)), flush=True)
            results.setdefault(runtime, {"trial_id": choice["trial_id"], "why": choice["why"], "by_examples_per_request": {}})
            results[runtime]["by_examples_per_request"][str(k)] = {
                "capacity_factor": record.capacity_factor, "capacity_factor_bound": record.capacity_factor_bound,
                "in_process_sps": record.in_process_sps, "sustained_sps": record.sustained_sps,
                "sustained_rps": record.sustained_rps, "promised_rps": record.promised_rps, "breaking_rps": record.breaking_rps,
                "verdict": record.verdict, "threads": record.threads, "max_batch_size": record.max_batch_size,
                "steps": [s.model_dump(exclude={"error_kinds"}) for s in record.steps], "loadtest_json": str(path),
            }  # fmt: skip
    payload = {
        "what": "capacity factor per runtime: samples/s one Ray Serve replica sustained within the p95 SLO under "
        "open-loop Poisson load / the in-process samples/s the cost model priced (the trial's throughput_sps)",
        "run": run_dir.name,
        "config": str(CONFIG.relative_to(REPO)),
        "duration_s_per_rate": args.duration,
        "runtimes": results,
        "how_to_apply": "effective per-replica throughput = throughput_sps × capacity_factor(runtime); replicas = "
        "ceil(peak_rps / (effective throughput × target_utilization)). A factor marked upper_bound (no rate held) or "
        "lower_bound (the highest rate tried held) bounds it from that side only.",
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(write("server_capacity", payload))


if __name__ == "__main__":
    main()
