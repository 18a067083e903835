"""A run folder as the report reads it: trials.csv, summary.json, config.yaml, trials/*.json, run.json.

Nothing is recomputed here and nothing in the folder is written; the report is
built from what the search stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.config import read_yaml
from orchestrator.errors import InputError, UnsafeFile, first_line
from orchestrator.report.results import with_quality_drop
from orchestrator.report.recipes import shown_knobs
from orchestrator.report.summary import DEFAULT_RUNTIME
from orchestrator.safe_files import (
    MAX_JSON_BYTES,
    MAX_TABLE_BYTES,
    check_regular_file,
    parse_json,
    read_json,
    read_json_if_present,
    read_text,
)
from orchestrator.tasks.text.legacy import metric_as_recorded

BOOL_COLUMNS = ("baseline", "feasible", "pareto", "qat", "projected", "accelerated")
REQUIRED = ("summary.json", "trials.csv", "config.yaml")


@dataclass
class RunData:
    """Everything the report shows, as stored by the search."""

    root: Path
    summary: dict[str, Any]
    trials: pd.DataFrame
    config: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def max_drop(self) -> float:
        return float(self.summary.get("max_quality_drop", self.config.get("objective", {}).get("max_quality_drop", 0.0)))

    @property
    def metric(self) -> str:
        metric = str(self.summary.get("quality_metric") or self.config.get("objective", {}).get("metric", "quality"))
        return metric_as_recorded(metric, self.trials.columns)  # an old text run's recall_at_10 was agreement

    @property
    def study_name(self) -> str:
        return str(self.run.get("study_name") or self.summary.get("run_id") or self.root.name)

    @property
    def knobs(self) -> list[str]:
        """The knobs this run's search space sampled or fixed (every knob for a folder without its space)."""
        return shown_knobs(self.config.get("space"))

    @property
    def baseline(self) -> dict[str, Any] | None:
        return self.summary.get("baseline")

    @property
    def recommended(self) -> dict[str, Any] | None:
        return self.summary.get("recommended")

    def row(self, trial_id: str | None) -> pd.Series | None:
        """The trials.csv row of a trial id, or None."""
        if trial_id is None:
            return None
        match = self.trials[self.trials["trial_id"] == str(trial_id)]
        return match.iloc[0] if len(match) else None

    def record(self, trial_id: str | None) -> dict[str, Any] | None:
        """A trial's full record (trials/<recipe_key>.json), or None where it has none."""
        row = self.row(trial_id)
        if row is None or not isinstance(row.get("recipe_key"), str):
            return None
        return self.records.get(row["recipe_key"])


def load_trials(path: Path) -> pd.DataFrame:
    """trials.csv with ids as strings and flag columns as plain bools (blank → False).

    A damaged, oversized, linked or foreign table is UnsafeFile (exit 2), for the report and for export alike.
    """
    check_regular_file(path, MAX_TABLE_BYTES)
    try:
        frame = pd.read_csv(path, dtype={"trial_id": str, "recipe_key": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise UnsafeFile(f"{path}: not a readable trials table ({first_line(exc, limit=200)})") from None
    missing = [c for c in ("trial_id", "status") if c not in frame.columns]
    if missing:
        raise UnsafeFile(f"{path}: not a Hedgerow trials table (no column {', '.join(missing)})")
    frame = with_quality_drop(frame)
    if "quality_metric" in frame:  # an old text run's recall_at_10 was agreement with the teacher
        frame["quality_metric"] = frame["quality_metric"].map(
            lambda m: metric_as_recorded(m, frame.columns) if isinstance(m, str) else m
        )
    for column in BOOL_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(_flag).astype(bool)
    for column in ("status", "prune_method", "error", "instance_type", "cost_reason", "fallbacks"):
        if column in frame:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return with_runtime_columns(frame)


def with_runtime_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """runtime, startup_seconds and kernel_archs in every table: a run from before them was eager, start-up unknown."""
    runtime = frame["runtime"] if "runtime" in frame else pd.Series(None, index=frame.index, dtype=object)
    frame["runtime"] = runtime.astype(object).where(runtime.notna() & (runtime.astype(str) != ""), DEFAULT_RUNTIME)
    frame["startup_seconds"] = frame["startup_seconds"].astype(float) if "startup_seconds" in frame else float("nan")
    archs = frame["kernel_archs"] if "kernel_archs" in frame else pd.Series(None, index=frame.index, dtype=object)
    frame["kernel_archs"] = archs.astype(object).where(archs.notna(), None)
    return frame


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if value is None or value != value:
        return False
    return bool(value)


def load_run(run_dir: str | Path) -> RunData:
    """Read a finished run folder; InputError (exit 2) when the folder is not one."""
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"RUN_DIR: {root} is not a folder (expected a run folder written by `hedgerow search`)")
    absent = [name for name in REQUIRED if not (root / name).is_file()]
    if absent:
        hint = ""
        if (root / "run.json").is_file() and (root / "config.yaml").is_file():
            hint = f"; the search did not finish: `hedgerow search --resume {root}` completes it"
        raise InputError(
            f"RUN_DIR: {root} is not a finished Hedgerow run folder: no {', '.join(absent)} in it "
            f"(expected {', '.join(REQUIRED)}){hint}"
        )
    summary = read_json(root / "summary.json")
    config = read_yaml(root / "config.yaml", allow_symlink=False) or {}
    trials = load_trials(root / "trials.csv")
    if not isinstance(config, dict):
        raise UnsafeFile(f"{root / 'config.yaml'}: expected a mapping, got {type(config).__name__}")
    if "run_id" not in summary:
        raise InputError(f"RUN_DIR: {root}: summary.json is not a Hedgerow results file (no run_id)")
    run = read_json_if_present(root / "run.json")
    return RunData(root=root, summary=summary, trials=trials, config=config, run=run, records=_records(root / "trials"))


def _records(folder: Path) -> dict[str, dict[str, Any]]:
    records = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            text = read_text(path, MAX_JSON_BYTES)  # a symlink or an oversized record is refused, not read
            try:
                records[path.stem] = parse_json(text, str(path))
            except UnsafeFile:
                continue  # a half-written record is left out; its trials.csv row still shows
    return records
