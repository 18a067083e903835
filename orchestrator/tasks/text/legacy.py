"""What a text task's metric names meant in run folders written before labeled retrieval.

Until labeled sets existed, `recall_at_10` was agreement with the teacher (the share of the teacher's ten nearest
passages the candidate also ranked in its ten), now `agreement_at_10`; `recall_at_10` now means recall against
relevance labels. A run of the new kind records `agreement_at_10` beside every text metric, so a run whose metric
is `recall_at_10` without that column is an old one, and its figures are agreement.
"""

from __future__ import annotations

from collections.abc import Iterable

RENAMED = {"recall_at_10": "agreement_at_10"}
NEW_RUN_MARKER = "agreement_at_10"  # a trials.csv column every labeled text run has


def metric_as_recorded(metric: str, trial_columns: Iterable[str]) -> str:
    """The name a run's metric has today: `agreement_at_10` for an old run that called it `recall_at_10`."""
    if metric in RENAMED and NEW_RUN_MARKER not in set(trial_columns):
        return RENAMED[metric]
    return metric
