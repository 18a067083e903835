"""Progress lines for export's long passes over a split: how many examples are done, at most one line per interval."""

from __future__ import annotations

import time
from typing import Callable


class PassProgress:
    """Watches chunked passes (`tasks.batches.watch_passes`) and reports "1,024 of 4,500 texts" as they go.

    A pass that ends within `every_s` seconds says nothing; a longer one reports at most once per `every_s`
    seconds, and once more when it ends, so a line always shows where a slow step stands.
    """

    def __init__(self, report: Callable[[str], None], unit: str = "examples", every_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.report = report
        self.unit = unit
        self.every_s = every_s
        self.clock = clock
        self._total = 0
        self._done = 0
        self._started = 0.0
        self._last_line = 0.0
        self._spoke = False

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if total != self._total or done <= self._done:  # a new pass
            self._total, self._started, self._last_line, self._spoke = total, now, now, False
        self._done = done
        finished = done >= total
        if now - self._last_line >= self.every_s or (finished and self._spoke):
            self.report(f"  {done:,} of {total:,} {self.unit} ({now - self._started:.0f} s)")
            self._last_line, self._spoke = now, True
        if finished:
            self._total = 0  # the next call starts a new pass
