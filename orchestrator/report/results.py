"""Trial results → one DataFrame with the trials.csv columns, from Ray Tune's ResultGrid."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.report.recipes import SHAPE_COLUMNS, TECHNIQUES
from orchestrator.report.tokens import TOKEN_COLUMNS

# The contract's columns first (docs/architecture.md, "The run folder"), then everything else a trial reports.
CONTRACT_COLUMNS = [
    "trial_id", "status", "prune_ratio", "prune_method", "bits", "kd_temperature", "kd_alpha", "kd_steps",
    "accuracy", "accuracy_drop", "params", "size_bytes", "peak_mem_bytes", "throughput_sps", "latency_p50_ms",
    "latency_p95_ms", "device", "instance_type", "replicas", "monthly_usd", "feasible", "pareto",
]  # fmt: skip
KNOB_COLUMNS = [k for k in TECHNIQUES.names() if k not in CONTRACT_COLUMNS]  # the other knobs, in Recipe order
EXTRA_COLUMNS = [
    "test_quality", "test_accuracy", "baseline", "seeded", "trial_number", "error", "quality_metric", "quality", "quality_drop", "quality_ci95_low", "quality_ci95_high",
    "quality_n", *KNOB_COLUMNS, "startup_seconds", "kernel_archs",
    *SHAPE_COLUMNS,  # a transformer's depth and widths, the candidate's and its teacher's
    "nonzero_params", "sparse_size_bytes", "raw_throughput_sps", "per_core_sps", "throughput_ratio_to_teacher",
    "teacher_reference_sps", "batch_latency_p95_ms", "flops_per_sample", "device_kind",
    "device_capability", "threads", "accelerated", "fallbacks", "instance_throughput_sps", "projected", "cost_reason",
    "monthly_usd_low", "monthly_usd_high", "replicas_low", "replicas_high",  # the $ interval (cost/model.py)
    "monthly_usd_noise_low", "monthly_usd_noise_high",
    "trial_seconds",
    "recipe_key", "node_id", "host",
    # paired drop intervals (val, test), then what the task reported beside its metric: the names, then each column
    "quality_drop_ci95_low", "quality_drop_ci95_high", "test_quality_drop", "test_quality_drop_ci95_low",
    "test_quality_drop_ci95_high", "diagnostic_metrics",
]  # fmt: skip
COLUMNS = CONTRACT_COLUMNS + EXTRA_COLUMNS


def _status(metrics: dict[str, Any], error: BaseException | None) -> str:
    if error is not None:
        return "failed"
    if metrics.get("final"):
        return "finished"
    return "stopped" if metrics else "failed"


# Tune names a trial's folder "<trainable>_<trial_id>_<index>_<params>_<date>"; searcher ids are 8 hex digits.
_TRIAL_DIR_ID = re.compile(r"_([0-9a-f]{8}(?:_\d{5})?)_\d+_")


def trial_id_from_path(path: str | Path) -> str | None:
    """The Tune trial id in a trial folder's name, or None where the name has none."""
    match = _TRIAL_DIR_ID.search(Path(str(path)).name)
    return match.group(1) if match else None


def rows_from_results(results: Any) -> list[dict[str, Any]]:
    """One dict per Tune trial: its final (or last) reported metrics, config and status."""
    from orchestrator.errors import describe_error

    rows = []
    for result in results:
        metrics = dict(result.metrics or {})
        own_id = trial_id_from_path(result.path)
        if own_id and metrics.get("trial_id") not in (None, own_id):
            # With reuse_actors, a trial whose node died can carry the previous trial's last result
            # on the same actor; those figures are not this trial's, so they are dropped.
            metrics = {}
        error = result.error
        row = {**(result.config or {}), **metrics}
        row["trial_id"] = own_id or metrics.get("trial_id")
        row["status"] = _status(metrics, error)
        row["error"] = describe_error(error) if error is not None else None
        if row["status"] == "stopped":
            row["error"] = f"stopped early by the scheduler at {metrics.get('kd_step')} distillation steps"
        rows.append(row)
    return rows


def diagnostic_columns(frame: pd.DataFrame) -> list[str]:
    """The diagnostics the run's trials recorded (each trial names its own in `diagnostic_metrics`), first seen first."""
    names = frame["diagnostic_metrics"].dropna().astype(str) if "diagnostic_metrics" in frame else []
    return list(dict.fromkeys(n for listed in names for n in listed.split(",") if n and n not in COLUMNS))


def trials_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The trials table: the contract's columns in order (missing ones empty), an LLM's token figures where its trials
    reported them (orchestrator/search/llm_trial.token_columns), then every diagnostic a trial recorded."""
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    token_columns = [c for c in TOKEN_COLUMNS if c in frame]
    frame = frame[COLUMNS + token_columns + [c for c in diagnostic_columns(frame) if c not in token_columns]].copy()
    frame["feasible"] = frame["feasible"].astype("boolean")
    return frame.sort_values(["baseline", "trial_id"], ascending=[False, True], na_position="last").reset_index(drop=True)


DEPTH_METHOD = "decoder blocks dropped"  # drop_layers, read as a prune method whose "ratio" is a count of blocks


def pruned_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials with a pruning method and ratio; those that dropped whole blocks (drop_layers) as one more method,
    their ratio the number of blocks dropped, so the threshold reads "the most layers that can be dropped"."""
    by_method = trials[trials["prune_method"].fillna("none") != "none"]
    if "drop_layers" not in trials:
        return by_method
    depth = trials[pd.to_numeric(trials["drop_layers"], errors="coerce").fillna(0) > 0].copy()
    depth["prune_method"] = DEPTH_METHOD
    depth["prune_ratio"] = pd.to_numeric(depth["drop_layers"])
    return pd.concat([by_method, depth], ignore_index=True)
