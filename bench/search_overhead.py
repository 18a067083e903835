"""Ray Tune's overhead per trial on the product's own Tuner setup, with trivial trials.

overhead per trial = (fit wall time − summed trial compute) / trials, at
concurrency 1 and 2. Writes bench/results/search_overhead.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, write  # noqa: E402

from orchestrator.config import load_config  # noqa: E402
from orchestrator.search.runner import RunPaths, new_tuner  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TRIAL_SECONDS = 0.2


def trivial_trial(config: dict) -> None:
    """Busy-wait a fixed time, then report the metrics the searcher needs."""
    from ray import tune

    start = time.perf_counter()
    while time.perf_counter() - start < TRIAL_SECONDS:
        pass
    tune.report({
        "final": True, "quality": 0.9, "objective_monthly_usd": 100.0, "constraint_quality": -0.01,
        "constraint_cost": 0.0, "compute_seconds": time.perf_counter() - start,
    })  # fmt: skip


def run(concurrency: int, trials: int) -> dict:
    """One search of trivial trials; wall time of fit() against the trials' own compute."""
    from ray import tune

    config = load_config(REPO / "search_spaces" / "digits.yaml")
    config.search.trials = trials
    config.search.max_concurrent = concurrency
    with tempfile.TemporaryDirectory() as tmp:
        paths = RunPaths(Path(tmp))
        meta = {"study_name": f"overhead-{concurrency}", "tune_storage": tmp}
        tuner = new_tuner(tune.with_resources(trivial_trial, {"cpu": 1}), config, paths, meta)
        started = time.perf_counter()
        results = tuner.fit()
        wall = time.perf_counter() - started
    compute = sum(r.metrics["compute_seconds"] for r in results)
    return {
        "concurrency": concurrency,
        "trials": trials,
        "wall_seconds": round(wall, 3),
        "summed_trial_compute_seconds": round(compute, 3),
        "overhead_per_trial_seconds": round((wall - compute) / trials, 3),
        "effective_seconds_per_trial": round(wall / trials, 3),
    }


def main() -> None:
    import ray

    from orchestrator.search.local_ray import init_embedded_ray

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    started = time.perf_counter()
    init_embedded_ray(num_cpus=2)  # loopback only, token authentication on, as the product's own
    init_seconds = time.perf_counter() - started
    try:
        rows = [run(c, args.trials) for c in (1, 2)]
    finally:
        ray.shutdown()
    payload = {
        "benchmark": "search_overhead",
        "trial_compute_seconds": TRIAL_SECONDS,
        "ray_init_seconds": round(init_seconds, 2),
        "setup": "the product's Tuner: OptunaSearch (TPE, define-by-run space of search_spaces/digits.yaml, SQLite study) behind a ConcurrencyLimiter, reuse_actors=True",
        "machine": machine(),
        "runs": rows,
    }
    print(write("search_overhead", payload))
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
