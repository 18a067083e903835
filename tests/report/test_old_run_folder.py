"""A run folder written by the 0.1.0 format (`make demo` before records were typed) still reports, exports and verifies.

The fixture is the demo's own run folder, as written (tests/fixtures/runs/digits-demo-0.1.0/README.md says what it
holds): its trials.csv names the objective `accuracy`, its records and summary are the untyped dicts of then.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.deploy.conftest import run_cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "digits-demo-0.1.0"
RUN_ID = "digits-20261207-163049-0daf8e"
EXPORTED = "2b8fec54"  # int8 alone on ONNX Runtime (a seeded trial): no training to reproduce, 7-bit int8 on any CPU


@pytest.fixture
def old_run(tmp_path, monkeypatch) -> Path:
    """A copy of the old run folder, with the teacher it searched with as this process's teacher cache."""
    run = tmp_path / RUN_ID
    shutil.copytree(FIXTURE, run, ignore=shutil.ignore_patterns("teacher_cache", "README.md"))
    shutil.copytree(FIXTURE / "teacher_cache", tmp_path / "cache")
    monkeypatch.setenv("HEDGEROW_CACHE_DIR", str(tmp_path / "cache"))
    return run


def test_an_old_run_folder_reports_with_its_recommendation_and_objective(old_run, capsys):
    status, out, err = run_cli(["report", str(old_run)], capsys)
    assert status == 0, err
    markdown = (old_run / "report.md").read_text()
    summary = json.loads((FIXTURE / "summary.json").read_text())
    recommended = summary["recommended"]
    assert recommended["trial_id"] in markdown and f"${recommended['monthly_usd']:,.2f}" in markdown
    assert "accuracy" in markdown and (old_run / "report.html").stat().st_size > 50_000
    trials = pd.read_csv(old_run / "pareto.csv", dtype={"trial_id": str})
    assert recommended["trial_id"] in set(trials["trial_id"])


@pytest.mark.slow
def test_an_old_run_folders_trial_exports_and_the_export_verifies(old_run, tmp_path, capsys):
    status, out, err = run_cli(["export", str(old_run), "--trial", EXPORTED, "--dest", str(tmp_path / "exports")], capsys)
    assert status == 0, err
    location = out.strip().splitlines()[-1]
    manifest = json.loads((Path(location) / "manifest.json").read_text())
    old_row = pd.read_csv(old_run / "trials.csv", dtype={"trial_id": str}).set_index("trial_id").loc[EXPORTED]
    assert manifest["trial_id"] == EXPORTED and manifest["recipe"]["runtime"] == "onnxruntime"
    assert manifest["quality"]["trial_value"] == pytest.approx(float(old_row["accuracy"]))
    assert manifest["deployment"]["monthly_usd"] == pytest.approx(float(old_row["monthly_usd"]))
    status, out, err = run_cli(["verify", location], capsys)
    assert status == 0 and "ok:" in out, err
