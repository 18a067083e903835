"""After the trials: results table, Pareto front, held-out test check, recommendation, summary files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from orchestrator.cost.catalog import BUNDLED, BUNDLED_INSTANCES
from orchestrator.cost.model import DEFAULT_MEMORY_HEADROOM
from orchestrator.report.pareto import mark_pareto
from orchestrator.report.results import rows_from_results, trials_frame
from orchestrator.report.records import Summary
from orchestrator.report.summary import build_summary, knobs_of, recommend, search_cost
from orchestrator.safe_files import write_atomic
from orchestrator.search.searcher import fail_stale_trials
from orchestrator.search.space import recipe_from_config
from orchestrator.tasks.base import paired_drop, quality_drop


def finalize(paths: Any, prepared: Any, results: Any, study_name: str, teacher_fingerprint: str | None = None) -> Summary:
    """Write trials.csv for a finished search and return its summary (the runner writes summary.json)."""
    import ray

    from orchestrator.search.heldout import test_quality
    from orchestrator.search.trial import resolve_device

    config = prepared.config
    settings = config.search
    frame = trials_frame(rows_from_results(results))
    frame["pareto"] = mark_pareto(frame)
    fail_stale_trials(settings.optuna_storage or paths.optuna_url, study_name)
    node_rows = measure_on_node_types(paths, prepared, frame, teacher_fingerprint)  # prices the cluster's types as measured

    remote = ray.remote(num_cpus=settings.resources_per_trial.cpu, num_gpus=settings.resources_per_trial.gpu)(test_quality)
    task_ref = ray.put(prepared.task)
    device = str(resolve_device(settings))  # rebuild where the trials ran
    threads = max(1, int(settings.resources_per_trial.cpu))
    pending: dict[str, Any] = {}
    done: dict[str, dict] = {}

    def submit(row: pd.Series) -> None:
        if row["trial_id"] not in pending and row["trial_id"] not in done:
            knobs = {k: v for k, v in knobs_of(row).items() if v is not None}
            recipe = recipe_from_config(knobs, seed=settings.seed).model_dump(mode="json")
            pending[row["trial_id"]] = remote.remote(task_ref, recipe, device, threads)

    finished = frame["status"] == "finished"
    baseline_rows = frame[finished & frame["baseline"].fillna(False).astype(bool)]
    base_id = baseline_rows.iloc[0]["trial_id"] if len(baseline_rows) else None

    def get(row: pd.Series) -> dict:
        """The trial's test result, with its paired drop against the baseline's (what `recommend` checks)."""
        submit(row)
        if row["trial_id"] not in done:
            done[row["trial_id"]] = dict(ray.get(pending.pop(row["trial_id"])))
            if base_id is not None and row["trial_id"] != base_id:
                pair_with_baseline(done[row["trial_id"]], get(baseline_rows.iloc[0]), settings.seed)
        return done[row["trial_id"]]

    for _, row in pd.concat([baseline_rows, frame[frame["pareto"]]]).iterrows():
        submit(row)  # evaluate the baseline and the Pareto set in parallel
    baseline_test = get(baseline_rows.iloc[0])["value"] if len(baseline_rows) else float("nan")
    recommended, passed_over = recommend(frame, config.objective.max_quality_drop, baseline_test, get)
    for key in list(pending):
        done[key] = dict(ray.get(pending.pop(key)))
    frame["test_quality"] = frame["trial_id"].map(lambda t: done[t]["value"] if t in done else None)
    frame["test_accuracy"] = frame["test_quality"]  # a deprecated alias (every metric), kept for one release
    add_test_drops(frame, done, base_id, seed=settings.seed)
    if recommended is not None:
        recommended = frame[frame["trial_id"] == recommended["trial_id"]].iloc[0]

    summary = build_summary(
        frame,
        run_id=paths.root.name,
        task=config.task.name,
        label=prepared.task.label,
        metric=config.objective.metric,
        max_drop=config.objective.max_quality_drop,
        recommended=recommended,
        passed_over=passed_over,
        test_results=done,
        cost=search_cost(frame, settings.resources_per_trial.cpu, settings.resources_per_trial.gpu, prepared.catalog),
        inputs=_inputs(prepared),
        costs=_recommended_cost(paths, recommended),
    )
    summary.node_measurements = node_rows
    if summary.recommended is not None and recommended is not None:
        summary.recommended = summary.recommended.model_copy(update=drop_intervals(recommended))
    _atomic_csv(frame, paths.trials_csv)
    return summary


def add_test_drops(frame: pd.DataFrame, done: dict[str, dict], baseline_id: Any, seed: int = 0) -> None:
    """The held-out drop of each evaluated trial against the teacher on `test`, paired over the same items.

    Adds `test_quality_drop` and its paired 95% interval to `frame` and to each `done[trial]` (where both have
    per-item scores; otherwise the drop alone, as before), then drops the per-item scores from `done`: they are
    not summary material. The paired mean equals the difference of the two means, so the held-out bound checks
    the same number `recommend` does; the interval says how sure it is.
    """
    base = done.get(baseline_id) if baseline_id is not None else None
    for result in done.values():
        if base is None:
            result.update(drop=None, drop_ci95_low=None, drop_ci95_high=None)
        elif "drop" not in result:  # those `recommend` checked are paired already (finalize's get)
            pair_with_baseline(result, base, seed)
    for result in done.values():
        result.pop("items", None)
    for column, key in (("test_quality_drop", "drop"), ("test_quality_drop_ci95_low", "drop_ci95_low"),
                        ("test_quality_drop_ci95_high", "drop_ci95_high")):  # fmt: skip
        frame[column] = frame["trial_id"].map(lambda t, key=key: done[t][key] if t in done else None)


def pair_with_baseline(result: dict, base: dict, seed: int = 0) -> None:
    """Set `drop` and its paired 95% interval on one test result (the point drop alone without per-item scores)."""
    drop = quality_drop(base["value"], result["value"], result["higher_is_better"])
    low = high = None
    items, base_items = result.get("items"), base.get("items")
    if items is not None and base_items is not None and len(items) == len(base_items) >= 2:
        drop, low, high = paired_drop(torch.tensor(base_items, dtype=torch.float64), torch.tensor(items, dtype=torch.float64), result["higher_is_better"], seed)
    result.update(drop=drop, drop_ci95_low=low, drop_ci95_high=high)


def drop_intervals(row: pd.Series) -> dict[str, Any]:
    """The recommended candidate's paired drop intervals, val and test, for summary.json."""

    def clean(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    return {
        "val_drop_ci95": [clean(row.get("quality_drop_ci95_low")), clean(row.get("quality_drop_ci95_high"))],
        "test_drop": clean(row.get("test_quality_drop")),
        "test_drop_ci95": [clean(row.get("test_quality_drop_ci95_low")), clean(row.get("test_quality_drop_ci95_high"))],
    }


def measure_on_node_types(
    paths: Any, prepared: Any, frame: pd.DataFrame, teacher_fingerprint: str | None
) -> list[dict[str, Any]]:
    """Measure the baseline and each Pareto candidate within the bound on every labelled instance type; reprice them.

    Changes `frame` in place (instance, replicas, $ and the Pareto mark of each remeasured
    candidate), rewrites those trials' records with the measured per-instance costs, and
    returns one row per (candidate, instance type): projected and measured side by side.
    """
    from orchestrator.cost.model import with_measured
    from orchestrator.search.remeasure import labelled_nodes, price_measured, remeasure
    from orchestrator.search.trial import load_record, record_path

    nodes = labelled_nodes(prepared.catalog, cpus_needed=prepared.config.search.resources_per_trial.cpu)
    if not nodes:
        return []
    config = prepared.config
    finished = frame["status"] == "finished"
    within = frame["quality_drop"].astype(float) <= config.objective.max_quality_drop + 1e-12
    chosen = frame[finished & (frame["baseline"].fillna(False).astype(bool) | (frame["pareto"] & within))]
    records = {str(r["trial_id"]): load_record(str(paths.records), str(r["recipe_key"])) for _, r in chosen.iterrows()}
    chosen = chosen[[records[str(t)] is not None for t in chosen["trial_id"]]]
    recipes = {str(r["trial_id"]): records[str(r["trial_id"])].recipe.model_dump(mode="json") for _, r in chosen.iterrows()}
    print(f"[hedgerow] measuring {len(chosen)} candidate(s) again on {', '.join(sorted(nodes))} (node label "
          f"hedgerow.io/instance-type)", file=sys.stderr, flush=True)  # fmt: skip
    measurements = remeasure(chosen, recipes, prepared, teacher_fingerprint, nodes)
    rows: list[dict[str, Any]] = []
    for trial_id in [str(t) for t in chosen["trial_id"]]:
        record = records[trial_id]
        projected = record.cost
        measured, mine = [], []
        for measurement in (m for m in measurements if m["trial_id"] == trial_id):
            cost, row = price_measured(measurement, projected, prepared)
            mine.append(row)
            if cost is not None:
                measured.append(cost)
        rows += mine
        repriced = with_measured(projected, measured)
        index = frame.index[frame["trial_id"].astype(str) == trial_id][0]
        for column, value in (("instance_type", repriced.instance_type), ("replicas", repriced.replicas),
                              ("monthly_usd", repriced.monthly_usd), ("projected", repriced.projected),
                              ("feasible", repriced.feasible), ("cost_reason", repriced.reason),
                              ("instance_throughput_sps", repriced.throughput_sps),
                              ("monthly_usd_low", repriced.monthly_usd_low), ("monthly_usd_high", repriced.monthly_usd_high),
                              ("replicas_low", repriced.replicas_low), ("replicas_high", repriced.replicas_high),
                              ("monthly_usd_noise_low", repriced.monthly_usd_noise_low),
                              ("monthly_usd_noise_high", repriced.monthly_usd_noise_high)):  # fmt: skip
            frame.loc[index, column] = value
        record.cost, record.node_measurements = repriced, mine
        record.write(record_path(str(paths.records), str(frame.loc[index, "recipe_key"])))
    frame["pareto"] = mark_pareto(frame)
    pd.DataFrame(rows).to_csv(paths.root / "node_measurements.csv", index=False)
    return rows


def _recommended_cost(paths: Any, recommended: pd.Series | None) -> dict[str, Any]:
    """The recommended trial's cost model result from its record (for the price on the measured architecture)."""
    from orchestrator.search.trial import load_record

    if recommended is None:
        return {}
    record = load_record(str(paths.records), str(recommended["recipe_key"]))
    return {recommended["trial_id"]: record.cost} if record is not None and record.cost is not None else {}


def _inputs(prepared: Any) -> dict[str, Any]:
    config, catalog = prepared.config, prepared.catalog
    traffic = config.traffic.model_dump(mode="json")
    traffic["days_per_month"] = config.traffic.days_per_month
    return {
        "traffic": traffic,
        "objective": config.objective.model_dump(mode="json"),
        "catalog_file": BUNDLED if catalog.path == BUNDLED_INSTANCES else str(catalog.path),  # not this machine's path
        "catalog_as_of": str(catalog.as_of),
        "region": catalog.region,
        "instance_types": [i.instance_type for i in catalog.instances],
        "memory_headroom": DEFAULT_MEMORY_HEADROOM,
    }


def _atomic_csv(frame: pd.DataFrame, path: Path) -> None:
    write_atomic(path, frame.to_csv(index=False))
