"""Optuna's parameter importance over the finished trials of a run's study, read from its stored optuna.db.

The database is copied to a temporary folder first, so reading it can never
change the run folder. PED-ANOVA (Optuna's default evaluator, deterministic)
ranks knobs by how differently they are set in the best 10% of trials; the
baseline trial has no sampled knobs and conditional knobs exist only where they
apply, which PED-ANOVA allows.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.config import knob_of_param  # `bits_index` is reported as `bits`
from orchestrator.errors import first_line

MIN_TRIALS = 4  # PED-ANOVA's top 10% needs a few trials to say anything
NOT_ENOUGH = "not enough finished trials"


@dataclass
class Importance:
    """Importance per objective ({"quality": {knob: share}, "monthly_usd": {...}}), or a note saying why there is none."""

    values: dict[str, dict[str, float]] = field(default_factory=dict)
    n_trials: int = 0
    note: str = ""


def param_importances(db: Path, study_name: str, min_trials: int = MIN_TRIALS) -> Importance:
    """Importance of each knob for quality (values[0], maximized) and monthly $ (values[1], minimized)."""
    if not db.is_file():
        return Importance(note=f"no Optuna study in the run folder ({db.name} is missing)")
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _importances(optuna, db, study_name, min_trials)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _importances(optuna, db: Path, study_name: str, min_trials: int) -> Importance:  # noqa: ANN001
    with tempfile.TemporaryDirectory(prefix="hedgerow-report-") as tmp:
        copy = Path(tmp) / "optuna.db"
        shutil.copyfile(db, copy)
        try:
            study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{copy}")
        except Exception as exc:  # a missing study, an unreadable database
            return Importance(note=f"the Optuna study {study_name!r} could not be read from {db.name}: {first_line(exc)}")
        complete = [
            t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.values is not None and len(t.values) >= 2
        ]  # fmt: skip
        sampled = [t for t in complete if t.params]
        if len(sampled) < min_trials:
            return Importance(n_trials=len(complete), note=f"{NOT_ENOUGH} ({len(sampled)} with sampled knobs; at least {min_trials} needed)")
        values: dict[str, dict[str, float]] = {}
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        targets = {"quality": lambda t: -t.values[0], "monthly_usd": lambda t: t.values[1]}  # PED-ANOVA ranks for low targets
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name, target in targets.items():
                    raw = optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)
                    values[name] = {knob_of_param(k): round(float(v), 4) for k, v in sorted(raw.items())}
        except Exception as exc:  # too few distinct values, a degenerate study
            return Importance(n_trials=len(complete), note=f"{NOT_ENOUGH} for Optuna's importance: {first_line(exc)}")
    return Importance(values=values, n_trials=len(complete))
