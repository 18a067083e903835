"""Read a finished run folder and pick the trial to export (default: the recommended one)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from orchestrator.compress.recipe import Recipe
from orchestrator.config import SearchConfig
from orchestrator.cost.catalog import did_you_mean
from orchestrator.errors import InputError, UnsafeFile
from orchestrator.report import upgrade
from orchestrator.report.records import RECORD_VERSION, Summary, TrialRecord, read_config, read_summary
from orchestrator.report.rundata import load_trials
from orchestrator.safe_files import join_inside, read_json, read_json_if_present

RUN_FILES = ("config.yaml", "summary.json", "trials.csv")
_RECIPE_KEY = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Trial:
    """One finished trial: its trials.csv row, its full record, and the recipe that rebuilds it."""

    trial_id: str
    row: dict[str, Any]
    record: TrialRecord

    @property
    def recipe(self) -> Recipe:
        return self.record.recipe

    @property
    def quality(self) -> float:
        return self.record.quality_value

    @property
    def test_quality(self) -> float | None:
        value = self.row.get("test_quality")
        return None if value is None else float(value)


@dataclass(frozen=True)
class RunFolder:
    """A run folder written by `hedgerow search`."""

    root: Path
    config: SearchConfig
    summary: Summary
    trials: pd.DataFrame

    @property
    def run_id(self) -> str:
        return self.summary.run_id or self.root.name

    @property
    def meta(self) -> dict[str, Any]:
        """run.json: run id, study, and the fingerprint of the teacher the search used (older runs: {})."""
        return read_json_if_present(self.root / "run.json")

    def trial(self, trial_id: str | None = None) -> Trial:
        """The named trial, or the recommended one; unknown or unfinished trials are InputErrors."""
        if trial_id is None:
            trial_id = self.summary.recommended.trial_id if self.summary.recommended is not None else None
            if not trial_id:
                note = self.summary.recommendation_note or "no candidate met the quality bound"
                raise InputError(
                    f"{self.root}: the run recommends no trial ({note}); pass --trial ID to export another "
                    f"(finished trials: {', '.join(self._finished_ids()) or 'none'})"
                )
        ids = [str(t) for t in self.trials["trial_id"]]
        if trial_id not in ids:
            raise InputError(
                f"--trial: no trial {trial_id!r} in {self.root / 'trials.csv'}{did_you_mean(trial_id, ids)} "
                f"(finished trials: {', '.join(self._finished_ids()) or 'none'})"
            )
        row = _clean_row(self.trials[self.trials["trial_id"].astype(str) == trial_id].iloc[0])
        if row.get("status") != "finished":
            raise InputError(
                f"--trial: trial {trial_id} did not finish (status {row.get('status')}: {row.get('error') or 'no error recorded'}); "
                f"nothing to export. Finished trials: {', '.join(self._finished_ids()) or 'none'}"
            )
        key = row.get("recipe_key")
        if not isinstance(key, str) or not _RECIPE_KEY.match(key):
            raise UnsafeFile(
                f"{self.root / 'trials.csv'}: trial {trial_id}: recipe_key {key!r} is not 16 hex digits; refused"
            )
        path = join_inside(self.root / "trials", f"{key}.json", f"trial {trial_id}'s record")
        if not path.exists():
            raise InputError(
                f"{path}: the record of trial {trial_id} is missing from the run folder (expected trials/<recipe_key>.json)"
            )
        raw = read_json(path)
        if not isinstance(raw.get("recipe"), dict):
            raise UnsafeFile(f"{path}: field 'recipe': expected an object (the trial's recipe), got {raw.get('recipe')!r:.60}")
        if raw.get("version") != RECORD_VERSION:
            raise UnsafeFile(f"{path}: record version {raw.get('version')!r}; this Hedgerow reads version {RECORD_VERSION}")
        try:
            record = TrialRecord.model_validate(upgrade.record(raw))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UnsafeFile(f"{path}: field '{where}': {err['msg']}") from None
        if record.recipe.key() != row.get("recipe_key"):
            raise InputError(
                f"{path}: its recipe hashes to {record.recipe.key()}, not the trial's recipe_key {row.get('recipe_key')}"
            )
        return Trial(trial_id=trial_id, row=row, record=record)

    def _finished_ids(self) -> list[str]:
        return [str(t) for t in self.trials.loc[self.trials["status"] == "finished", "trial_id"]]


def open_run(path: str | Path) -> RunFolder:
    """Read a run folder; anything else is an InputError that names what is missing (and nearby run folders)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"RUN_DIR: {root} is not a folder; expected a run folder written by `hedgerow search`")
    missing = [name for name in RUN_FILES if not (root / name).is_file()]
    if not (root / "trials").is_dir():
        missing.append("trials/")
    if missing:
        runs = sorted(p.name for p in root.iterdir() if p.is_dir() and all((p / f).is_file() for f in RUN_FILES))
        hint = f"; did you mean {root / runs[-1]}?" if runs else ""
        if len(runs) > 1:
            hint += f" (it holds {len(runs)} run folders: {', '.join(runs)})"
        raise InputError(f"RUN_DIR: {root} is not a Hedgerow run folder (missing {', '.join(missing)}){hint}")
    summary = read_summary(root / "summary.json")
    trials = load_trials(root / "trials.csv")
    return RunFolder(root=root, config=read_config(root / "config.yaml"), summary=summary, trials=trials)


def _clean_row(row: pd.Series) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            out[key] = None
        else:
            out[key] = value.item() if hasattr(value, "item") else value
    return out
