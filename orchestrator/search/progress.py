"""A one-line progress report per finished trial: done of total, failures, best monthly $ so far."""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback


class ProgressLine(Callback):
    """Prints `[hedgerow] 5/16 trials · 1 failed · best $412.34/month (trial a1b2) within the bound`."""

    def __init__(self, total: int, max_quality_drop: float) -> None:
        self.total = total
        self.max_quality_drop = max_quality_drop
        self.done = self.failed = 0
        self.best: tuple[float, str] | None = None

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        result = trial.last_result or {}
        if result.get("final") and result.get("feasible") and result.get("accuracy_drop", 1.0) <= self.max_quality_drop:
            monthly = float(result["monthly_usd"])
            if self.best is None or monthly < self.best[0]:
                self.best = (monthly, trial.trial_id)
        self._print()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        self.failed += 1
        self._print()

    def _print(self) -> None:
        best = f"best ${self.best[0]:,.2f}/month (trial {self.best[1]}) within the bound" if self.best else "none within the bound yet"
        print(f"[hedgerow] {self.done}/{self.total} trials · {self.failed} failed · {best}", file=sys.stderr, flush=True)
