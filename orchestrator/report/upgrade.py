"""Run folders of earlier formats, read as today's: each change of the run format, and what an older folder meant.

`trials`, `summary`, `record` and `config` take what a run folder holds and return it in today's shape; the
readers in report/records.py and report/rundata.py call them, and no other module knows an older format.

What changed, oldest first (each rule below names the change it undoes):

1. Runtimes became a knob. Before, every candidate was served eagerly: a trials.csv without `runtime` (or a blank
   one) was `eager`, its start-up unknown, its kernels' CPUs unrecorded; a quantize step's record without
   `kernel_archs` ran where its backend runs (torch.ao's x86 backends: x86_64 only).
2. `quality_drop` named the drop for any metric. Before, `accuracy_drop` held it whatever the metric was.
3. Labeled retrieval. Before, a text task's `recall_at_10` was agreement with the teacher (the share of the
   teacher's ten nearest passages the candidate also ranked in its ten), today's `agreement_at_10`; a labeled run
   records `agreement_at_10` beside its metric, so a run whose metric is `recall_at_10` without that column is
   an old one.
4. Version 0.2.0 named the objective's columns for what they hold: `quality`, `quality_drop` and `test_quality`
   with `quality_metric` naming the metric, and `diagnostic_metrics` naming each diagnostic column a trial
   recorded. Before, `test_accuracy` held the held-out quality of any metric, and the diagnostic columns were the
   text tasks' (ndcg_at_10, recall_at_10, mrr_at_10, agreement_at_10, fidelity). `accuracy`, `accuracy_drop` and
   `test_accuracy` stay as aliases of the new columns (every metric) for this release.
5. The $ interval. Before, a trial was priced at a point only: a row without `monthly_usd_low`, `monthly_usd_high`,
   `replicas_low`, `replicas_high`, `monthly_usd_noise_low` and `monthly_usd_noise_high` has no interval (None), and the recommendation no noise tie to weigh.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from orchestrator.techniques.details import x86_only

DEFAULT_RUNTIME = "eager"  # (1) what a candidate recorded before runtimes were a knob was served with
RENAMED_METRICS = {"recall_at_10": "agreement_at_10"}  # (3)
LABELED_RUN_MARKER = "agreement_at_10"  # (3) a trials.csv column every labeled text run has
TEXT_DIAGNOSTICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "agreement_at_10", "fidelity")  # (4) before they were named
ALIASES = {"accuracy": "quality", "accuracy_drop": "quality_drop", "test_accuracy": "test_quality"}  # (4) old: new
INTERVAL_COLUMNS = (
    "monthly_usd_low", "monthly_usd_high", "replicas_low", "replicas_high", "monthly_usd_noise_low", "monthly_usd_noise_high",
)  # (5) fmt: skip


def metric_as_recorded(metric: str, trial_columns: Any) -> str:
    """(3) The name a run's metric has today: `agreement_at_10` for an old run that called it `recall_at_10`."""
    if metric in RENAMED_METRICS and LABELED_RUN_MARKER not in set(trial_columns):
        return RENAMED_METRICS[metric]
    return metric


def _blank(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value) or value == ""


def row(raw: dict[str, Any], columns: Any = None) -> dict[str, Any]:
    """One trial's row in today's columns (every change above); `columns`: the table's, where the row is one of many."""
    out = dict(raw)
    columns = set(raw if columns is None else columns)
    if _blank(out.get("runtime")):  # (1)
        out["runtime"] = DEFAULT_RUNTIME
    out.setdefault("startup_seconds", None)
    out["kernel_archs"] = None if _blank(out.get("kernel_archs")) else out["kernel_archs"]
    if _blank(out.get("quality_drop")) and not _blank(out.get("accuracy_drop")):  # (2)
        out["quality_drop"] = out["accuracy_drop"]
    if isinstance(out.get("quality_metric"), str):  # (3)
        out["quality_metric"] = metric_as_recorded(out["quality_metric"], columns)
    for old, new in ALIASES.items():  # (4)
        if _blank(out.get(new)) and not _blank(out.get(old)):
            out[new] = out[old]
        if new in out:
            out[old] = out[new]
    if "diagnostic_metrics" not in columns:  # (4)
        out["diagnostic_metrics"] = ",".join(c for c in TEXT_DIAGNOSTICS if c in columns) or None
    for column in INTERVAL_COLUMNS:  # (5)
        out.setdefault(column, None)
    return out


def trials(frame: pd.DataFrame) -> pd.DataFrame:
    """A trials table in today's columns, row by row (a table holds a few hundred rows at most)."""
    columns = list(frame.columns)
    rows = [row(r, columns) for r in frame.to_dict("records")]
    upgraded = pd.DataFrame(rows, index=frame.index)
    return upgraded if len(rows) else frame.assign(
        **{c: None for c in ("runtime", "diagnostic_metrics", *INTERVAL_COLUMNS) if c not in frame}
    )


def candidate(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """A summary candidate in today's fields: its runtime (1), drop (2) and quality columns (4)."""
    if raw is None:
        return None
    out = dict(raw)
    out["runtime"] = out.get("runtime") or DEFAULT_RUNTIME  # (1)
    if out.get("quality_drop") is None and out.get("accuracy_drop") is not None:  # (2)
        out["quality_drop"] = out["accuracy_drop"]
    for old, new in ALIASES.items():  # (4)
        if out.get(new) is None and out.get(old) is not None:
            out[new] = out[old]
        out[old] = out.get(new)
    return out


def summary(raw: dict[str, Any]) -> dict[str, Any]:
    """summary.json in today's fields."""
    out = dict(raw)
    out["baseline"], out["recommended"] = candidate(out.get("baseline")), candidate(out.get("recommended"))
    out["pareto"] = [candidate(c) for c in out.get("pareto") or []]
    return out


def record(raw: dict[str, Any]) -> dict[str, Any]:
    """A trial's record in today's fields: its row's (1, 2, 4), each quantize step's kernel CPUs (1). What is not the
    shape expected is left for validation to name."""
    out = dict(raw)
    if isinstance(out.get("row"), dict):
        out["row"] = row(out["row"])
    compression = out.get("compression")
    if isinstance(compression, dict) and isinstance(compression.get("steps"), list):
        out["compression"] = {**compression, "steps": [_step(s) if isinstance(s, dict) else s for s in compression["steps"]]}
    return out


def _step(step: dict[str, Any]) -> dict[str, Any]:
    details = step.get("details")
    if step.get("stage") != "quantize" or not isinstance(details, dict) or "kernel_archs" in details or not details.get("backend"):
        return step
    return {**step, "details": {**details, "kernel_archs": x86_only(details["backend"])}}  # (1)


def config(raw: dict[str, Any]) -> dict[str, Any]:
    """config.yaml in today's fields (no knob or setting has been renamed yet: as it is)."""
    return dict(raw)
