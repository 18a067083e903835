"""Search progress: a bar rewritten in place on a terminal, one plain line per trial when piped."""

from __future__ import annotations

import io
from types import SimpleNamespace

from orchestrator.search.progress import ProgressLine


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _finish(progress: ProgressLine, trial_id: str, usd: float, drop: float = 0.0) -> None:
    result = {"final": True, "feasible": True, "quality_drop": drop, "monthly_usd": usd}
    progress.on_trial_complete(0, [], SimpleNamespace(last_result=result, trial_id=trial_id))


def test_piped_output_keeps_one_line_per_trial():
    stream = io.StringIO()
    progress = ProgressLine(total=3, max_quality_drop=0.01, stream=stream)
    _finish(progress, "a", 200.0)
    progress.on_trial_error(0, [], SimpleNamespace(last_result={}, trial_id="b"))
    _finish(progress, "c", 130.31, drop=0.5)  # outside the bound: not the best
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[hedgerow] 1/3 trials · 0 failed · best $200.00/month (trial a) within the bound",
        "[hedgerow] 2/3 trials · 1 failed · best $200.00/month (trial a) within the bound",
        "[hedgerow] 3/3 trials · 1 failed · best $200.00/month (trial a) within the bound",
    ]
    assert "\r" not in stream.getvalue()


def test_a_terminal_gets_one_bar_updated_in_place_with_time_left():
    stream = Terminal()
    progress = ProgressLine(total=4, max_quality_drop=0.01, stream=stream)
    _finish(progress, "a", 200.0)
    _finish(progress, "b", 130.31)
    progress.on_experiment_end([])
    text = stream.getvalue()
    assert "\r" in text and text.count("\n") <= 1, "the bar must be rewritten, not printed line by line"
    final = text.split("\r")[-1]
    assert "2/4" in final and "| 0 failed · best $130.31/month (trial b)" in final and "elapsed" in final and "left" in final


def test_the_callback_pickles_as_ray_tune_needs_even_with_a_bar_running():
    import pickle

    progress = ProgressLine(total=2, max_quality_drop=0.01, stream=Terminal())
    _finish(progress, "a", 200.0)
    restored = pickle.loads(pickle.dumps(progress))
    assert (restored.done, restored.best) == (1, (200.0, "a"))
