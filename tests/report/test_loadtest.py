"""The "Held under load" rows: one per load-tested export of a run folder, read back from its loadtest.json."""

from __future__ import annotations

import pytest

from orchestrator.errors import UnsafeFile
from orchestrator.report.loadtest import LoadTestRecord, StepResult, held_under_load_rows, read_loadtest


def _step(factor: float, rate: float, p95: float, verdict: str) -> StepResult:
    return StepResult(
        factor=factor, target_rps=rate, duration_s=10, arrivals=int(rate * 10), sent=int(rate * 10), ok=int(rate * 10) - 1,
        errors=1, error_kinds={"HTTP 503": 1}, error_rate=1 / (rate * 10), offered_rps=rate, achieved_rps=rate * 0.99,
        achieved_sps=rate * 0.99, latency_p50_ms=p95 / 3, latency_p95_ms=p95, latency_p99_ms=p95 * 1.5,
        generator_lag_p95_ms=0.5, verdict=verdict, reason="test",
    )  # fmt: skip


def _record(trial_id: str, steps: list[StepResult], verdict: str) -> LoadTestRecord:
    return LoadTestRecord(
        created="2026-01-01T00:00:00+00:00", run_id="run-1", trial_id=trial_id, export=f"/runs/run-1/exports/run-1/{trial_id}",
        runtime="eager", device="cpu", threads=1, max_batch_size=64, batch_wait_timeout_s=0.025, max_ongoing_requests=128,
        examples_per_request=1, promised_rps=200.0, promised_reason="peak 2400 rps / 12 Serve replica(s)", base_rps=200.0,
        slo_p95_ms=250, max_error_rate=0.01, in_process_sps=1000.0, steps=steps, verdict=verdict,
        breaking_rps=300.0, sustained_rps=198.0, sustained_sps=198.0, capacity_factor=0.198, capacity_factor_bound="measured",
    )  # fmt: skip


def test_rows_give_each_exports_figures_at_the_promised_rate(tmp_path):
    exports = tmp_path / "exports" / "run-1"
    for trial_id in ("a", "b"):
        (exports / trial_id).mkdir(parents=True)
    _record("a", [_step(0.5, 100, 40, "held"), _step(1.0, 200, 90, "held"), _step(1.5, 300, 400, "broke")], "held").write(
        exports / "a" / "loadtest.json"
    )
    (exports / "b" / "loadtest.json").write_text('{"version": 1, "trial_id": "b"}')
    (exports / "c").mkdir()  # an export never load-tested has no row

    good, bad = held_under_load_rows(tmp_path)
    assert good["trial_id"] == "a" and good["problem"] is None
    assert (good["promised_rps"], good["at_rps"], good["latency_p95_ms"], good["errors"]) == (200.0, 200, 90, 1)
    assert (good["verdict"], good["breaking_rps"], good["capacity_factor"]) == ("held", 300.0, 0.198)
    assert bad["trial_id"] == "b" and "loadtest.json" in bad["problem"] and "created" in bad["problem"]


def test_a_run_that_went_below_half_the_promise_reports_its_first_step(tmp_path):
    folder = tmp_path / "exports" / "run-1" / "a"
    folder.mkdir(parents=True)
    _record("a", [_step(0.5, 100, 900, "broke"), _step(0.25, 50, 80, "held")], "broke").write(folder / "loadtest.json")
    (row,) = held_under_load_rows(tmp_path)
    assert (row["at_rps"], row["latency_p95_ms"], row["verdict"]) == (100, 900, "broke")


def test_no_exports_no_rows(tmp_path):
    assert held_under_load_rows(tmp_path) == []


def test_a_loadtest_of_another_version_is_refused(tmp_path):
    path = tmp_path / "loadtest.json"
    path.write_text('{"version": 2}')
    with pytest.raises(UnsafeFile, match="version 2"):
        read_loadtest(path)


def test_the_report_shows_held_under_load_from_the_runs_exports(tmp_path):
    from orchestrator.report.build import build_report
    from tests.report._fake import make_run

    root = make_run(tmp_path)
    untested = build_report(root)["markdown"].read_text()
    assert "### Held under load" in untested and "No export of this run was load-tested" in untested

    folder = root / "exports" / root.name / "a"
    folder.mkdir(parents=True)
    _record("a", [_step(0.5, 100, 40, "held"), _step(1.0, 200, 90, "held"), _step(1.5, 300, 400, "broke")], "held").write(
        folder / "loadtest.json"
    )
    paths = build_report(root)
    md, html = paths["markdown"].read_text(), paths["html"].read_text()
    section = md.split("### Held under load", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| a "))
    # the promised rate, the step at it, the breaking rate and the factor, as loadtest.json holds them
    for cell in ("| 200 | 200 |", "30 ms / 90 ms / 135 ms", "250 ms", "1 (", "held", "300", "198", "0.198"):
        assert cell in row, (cell, row)
    assert "Held under load" in html and "0.198" in html
