"""A run folder as the report reads it: trials.csv, summary.json, config.yaml, trials/*.json, run.json.

Nothing is recomputed here and nothing in the folder is written; the report is
built from what the search stored, brought up to today's shape (report/upgrade.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.config import SearchConfig
from orchestrator.errors import InputError, UnsafeFile, first_line
from orchestrator.report import tokens, upgrade
from orchestrator.report.recipes import shown_knobs
from orchestrator.report.records import Candidate, Summary, TrialRecord, read_config, read_record, read_summary
from orchestrator.safe_files import MAX_TABLE_BYTES, check_regular_file, read_json_if_present

BOOL_COLUMNS = ("baseline", "feasible", "pareto", "qat", "projected", "accelerated")
REQUIRED = ("summary.json", "trials.csv", "config.yaml")


@dataclass
class RunData:
    """Everything the report shows, as stored by the search."""

    root: Path
    summary: Summary
    trials: pd.DataFrame
    config: SearchConfig
    run: dict[str, Any] = field(default_factory=dict)
    records: dict[str, TrialRecord] = field(default_factory=dict)

    @property
    def max_drop(self) -> float:
        return float(self.summary.max_quality_drop)

    @property
    def metric(self) -> str:
        return self.summary.quality_metric

    @property
    def higher_is_better(self) -> bool:
        """The metric's direction, as the trials' records (or the baseline's test result) state it."""
        for record in self.records.values():
            if "higher_is_better" in record.quality:
                return bool(record.quality["higher_is_better"])
        test = self.baseline.test if self.baseline is not None else None
        if test and "higher_is_better" in test:
            return bool(test["higher_is_better"])
        return not tokens.is_perplexity(self.metric)

    @property
    def perplexity(self) -> bool:
        """Whether quality is log-perplexity (a decoder LLM's), shown as perplexity."""
        return tokens.is_perplexity(self.metric)

    @property
    def priced_by_tokens(self) -> bool:
        """Whether the candidates were priced by their output tokens (a decoder LLM's), not by samples/s."""
        return tokens.priced_by_tokens(self.trials, self.records, getattr(self.config.traffic, "tokens", None))

    @property
    def study_name(self) -> str:
        return str(self.run.get("study_name") or self.summary.run_id or self.root.name)

    @property
    def knobs(self) -> list[str]:
        """The knobs this run's search space sampled or fixed (every knob for a folder without its space)."""
        return shown_knobs(self.config.space)

    @property
    def baseline(self) -> Candidate | None:
        return self.summary.baseline

    @property
    def recommended(self) -> Candidate | None:
        return self.summary.recommended

    def row(self, trial_id: str | None) -> pd.Series | None:
        """The trials.csv row of a trial id, or None."""
        if trial_id is None:
            return None
        match = self.trials[self.trials["trial_id"] == str(trial_id)]
        return match.iloc[0] if len(match) else None

    def record(self, trial_id: str | None) -> TrialRecord | None:
        """A trial's full record (trials/<recipe_key>.json), or None where it has none."""
        row = self.row(trial_id)
        if row is None or not isinstance(row.get("recipe_key"), str):
            return None
        return self.records.get(row["recipe_key"])


def load_trials(path: Path) -> pd.DataFrame:
    """trials.csv in today's columns, with ids as strings and flag columns as plain bools (blank → False).

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
    frame = upgrade.trials(frame)
    for column in BOOL_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(_flag).astype(bool)
    for column in ("status", "prune_method", "error", "instance_type", "cost_reason", "fallbacks", "kernel_archs"):
        if column in frame:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["startup_seconds"] = frame["startup_seconds"].astype(float)
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
    trials = load_trials(root / "trials.csv")
    summary = read_summary(root / "summary.json")
    summary.quality_metric = upgrade.metric_as_recorded(summary.quality_metric, trials.columns)
    config = read_config(root / "config.yaml")
    run = read_json_if_present(root / "run.json")
    records = _records(root / "trials")
    trials = tokens.fill_token_columns(trials, records)
    return RunData(root=root, summary=summary, trials=trials, config=config, run=run, records=records)


def _records(folder: Path) -> dict[str, TrialRecord]:
    """Every readable record by recipe key; a half-written or foreign one is left out (its trials.csv row still shows)."""
    records = {}
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            record = read_record(path)
            if record is not None:
                records[path.stem] = record
    return records
