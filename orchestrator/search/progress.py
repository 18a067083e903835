"""Search progress: one bar that updates in place on a terminal, one line per finished trial elsewhere.

Both show trials done of total, failures and the best monthly $ within the bound; the
bar (tqdm) adds elapsed and remaining time. Piped or in CI nothing is rewritten, so
logs keep today's one line per trial.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ray.tune import Callback


class ProgressLine(Callback):
    """Prints `[hedgerow] 5/16 trials · 1 failed · best $412.34/month (trial a1b2) within the bound`."""

    def __init__(
        self, total: int, max_quality_drop: float, stream: TextIO | None = None, interactive: bool | None = None
    ) -> None:
        self.total = total
        self.max_quality_drop = max_quality_drop
        self._stream = stream
        self.done = self.failed = 0
        self.best: tuple[float, str] | None = None
        if interactive is None:
            interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interactive = interactive
        self.bar: Any = None  # made on first use: Ray Tune pickles its callbacks, and a stream does not pickle

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None, "bar": None}

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        result = trial.last_result or {}
        if result.get("final") and result.get("feasible") and result.get("quality_drop", 1.0) <= self.max_quality_drop:
            monthly = float(result["monthly_usd"])
            if self.best is None or monthly < self.best[0]:
                self.best = (monthly, trial.trial_id)
        self._show()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        self.failed += 1
        self._show()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def _status(self) -> str:
        best = f"best ${self.best[0]:,.2f}/month (trial {self.best[1]}) within the bound" if self.best else "none within the bound yet"
        return f"{self.failed} failed · {best}"

    def _show(self) -> None:
        if self.interactive and self.bar is None:
            self.bar = _bar(self.total, self.stream)
        if self.bar is not None:
            status = self._status().replace("{", "{{").replace("}", "}}")
            self.bar.bar_format = BAR_FORMAT.format(status=status)
            self.bar.update(self.done - self.bar.n)
            self.bar.refresh()  # trials finish seconds apart: show each one, whatever tqdm's rate limit
            return
        print(f"[hedgerow] {self.done}/{self.total} trials · {self._status()}", file=self.stream, flush=True)


BAR_FORMAT = "{{desc}} {{n_fmt}}/{{total_fmt}} |{{bar}}| {status} [{{elapsed}} elapsed, {{remaining}} left]"


def _bar(total: int, stream: TextIO) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        file=stream,
        desc="[hedgerow] trials",
        unit="trial",
        dynamic_ncols=True,
        bar_format=BAR_FORMAT.format(status="none within the bound yet"),
    )
