"""Rows from Tune results: each trial keeps its own identity and only its own figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.report.results import rows_from_results, trial_id_from_path


@dataclass
class _Result:
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None


def test_trial_id_is_read_from_the_trial_folder_name():
    assert trial_id_from_path("/runs/x/tune/run_trial_7e9156e9_7_bits=8,kd_steps=60_2026-11-26_03-37-57") == "7e9156e9"
    assert trial_id_from_path("/runs/x/tune/not-a-trial-folder") is None


def test_a_failed_trial_carrying_another_trials_last_result_gets_none_of_its_figures():
    finished = _Result("/t/run_trial_676f4179_3_bits=8_2026", {"trial_id": "676f4179", "final": True, "monthly_usd": 65.0,
                                                               "host": "vm"}, {"bits": 8})  # fmt: skip
    stale = _Result("/t/run_trial_7e9156e9_7_bits=8_2026", {"trial_id": "676f4179", "final": True, "monthly_usd": 65.0,
                                                            "host": "vm"}, {"bits": 8}, RuntimeError("node died"))  # fmt: skip
    rows = rows_from_results([finished, stale])
    assert [r["trial_id"] for r in rows] == ["676f4179", "7e9156e9"]
    assert rows[0]["status"] == "finished" and rows[0]["monthly_usd"] == 65.0
    assert rows[1]["status"] == "failed" and "monthly_usd" not in rows[1] and "node died" in rows[1]["error"]
    assert rows[1]["bits"] == 8  # its own config stays


def test_a_trial_that_never_reported_takes_its_id_from_its_folder():
    rows = rows_from_results([_Result("/t/run_trial_0badc0de_1_bits=32_2026", {}, {"bits": 32}, RuntimeError("boom"))])
    assert rows[0]["trial_id"] == "0badc0de" and rows[0]["status"] == "failed"
