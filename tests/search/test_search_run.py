"""A real search on real Ray: the run folder holds the contract's files, columns and keys."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from orchestrator.cli import main
from orchestrator.report.results import CONTRACT_COLUMNS

pytestmark = pytest.mark.slow

SUMMARY_KEYS = {"run_id", "task", "n_trials", "n_failed", "baseline", "recommended", "search_cost"}
BASELINE_KEYS = {"accuracy", "size_bytes", "throughput_sps", "instance_type", "replicas", "monthly_usd"}
RECOMMENDED_KEYS = {
    "trial_id", "knobs", "accuracy", "accuracy_drop", "size_bytes", "throughput_sps", "instance_type", "replicas",
    "monthly_usd", "savings_ratio", "test_accuracy", "test_ci95",
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(fast_search_run):
    """The session's 8-trial search (2:4 sparsity in the space, which fails on this CPU), shared with the report tests."""
    return fast_search_run.path


def test_during_the_search_no_ray_port_answered_beyond_loopback(fast_search_run):
    names = {name for name, _, _ in fast_search_run.listeners}
    assert {"gcs_server", "raylet"} <= names, f"the watcher never saw Ray listening: {sorted(names)}"
    assert any(name.startswith("ray::") for name in names), "no worker was seen listening"
    assert not fast_search_run.exposed, sorted(set(fast_search_run.exposed))


def test_run_folder_holds_the_contract_files(run_dir):
    for name in ("config.yaml", "trials.csv", "summary.json", "report.html", "report.md", "optuna.db", "tune"):
        assert (run_dir / name).exists(), name


def test_trials_csv_has_every_contract_column_and_a_row_per_trial(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    assert list(frame.columns[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert "test_accuracy" in frame.columns
    assert len(frame) == 8 and frame["trial_id"].is_unique
    assert set(frame["status"]) <= {"finished", "failed", "stopped"}


def test_baseline_is_the_first_row_and_the_uncompressed_teacher(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    base = frame.iloc[0]
    assert bool(base["baseline"]) and base["status"] == "finished"
    assert base["prune_method"] == "none" and base["bits"] == 32 and base["kd_steps"] == 0
    assert base["accuracy_drop"] == 0.0 and base["accuracy"] >= 0.97
    assert not pd.isna(base["test_accuracy"])


def test_unsupported_trials_fail_with_their_reason_and_the_search_goes_on(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    failed = frame[frame["status"] == "failed"]
    assert len(failed) >= 1, "the seeded space should sample 2:4 sparsity at least once"
    assert failed["error"].str.contains("not supported on this device").all()
    assert (frame["status"] == "finished").sum() >= 4


def test_summary_has_the_contract_keys_and_a_sound_recommendation(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert BASELINE_KEYS <= set(summary["baseline"])
    rec = summary["recommended"]
    assert RECOMMENDED_KEYS <= set(rec)
    assert {"cpu_hours", "gpu_hours", "usd"} <= set(summary["search_cost"])
    frame = pd.read_csv(run_dir / "trials.csv").set_index("trial_id")
    row = frame.loc[rec["trial_id"]]
    assert bool(row["feasible"]) and row["accuracy_drop"] <= summary["max_quality_drop"]
    assert summary["baseline"]["test"]["value"] - rec["test_accuracy"] <= summary["max_quality_drop"]
    # Nothing within the bound on validation is cheaper unless it was passed over for its test drop:
    # a candidate can hold on validation and miss on test, and the recommendation must not hide that.
    max_drop, base_test = summary["max_quality_drop"], summary["baseline"]["test"]["value"]
    ok = frame[(frame["status"] == "finished") & frame["feasible"].astype(bool) & (frame["accuracy_drop"] <= max_drop)]
    passed_over = {p["trial_id"]: p for p in rec["passed_over"]}
    cheaper = ok[ok["monthly_usd"] < rec["monthly_usd"]]
    assert set(cheaper.index) <= set(passed_over), "a cheaper candidate was skipped without a reason"
    for trial_id, passed in passed_over.items():
        assert trial_id in cheaper.index or frame.loc[trial_id, "monthly_usd"] == pytest.approx(rec["monthly_usd"])
        assert trial_id in summary["recommendation_note"]
        if passed.get("noise_tie"):  # within measurement noise of the recommended one, which is simpler
            assert passed["preferred"] == rec["trial_id"] and "within measurement noise" in passed["reason"]
            continue
        assert base_test - frame.loc[trial_id, "test_accuracy"] > max_drop, passed["reason"]
        assert "exceeds the bound" in passed["reason"] and trial_id in summary["recommendation_note"]
    assert rec["monthly_usd"] == pytest.approx(ok.drop(index=list(passed_over))["monthly_usd"].min())
    assert rec["monthly_usd"] <= summary["baseline"]["monthly_usd"]
    saved = summary["baseline"]["monthly_usd"] - rec["monthly_usd"]
    assert rec["savings_ratio"] == pytest.approx(saved / summary["baseline"]["monthly_usd"], abs=1e-4)
    assert summary["n_failed"] == int((frame["status"] == "failed").sum())


def test_throughput_is_the_ratio_to_the_teacher_times_the_kept_reference(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    done = frame[frame["status"] == "finished"]
    assert done["teacher_reference_sps"].nunique() == 1, "one machine, one reference for every trial"
    recomputed = done["throughput_ratio_to_teacher"] * done["teacher_reference_sps"]
    assert done["throughput_sps"].to_numpy() == pytest.approx(recomputed.to_numpy(), rel=1e-9)
    base = done[done["baseline"].astype(bool)].iloc[0]
    assert 0.6 < base["throughput_ratio_to_teacher"] < 1.6  # the teacher against itself (5 single-batch rounds, loaded CI)
    record = json.loads(next((run_dir / "trials").glob("*.json")).read_text())
    assert record["throughput"]["reference"]["throughput_sps"] == done["teacher_reference_sps"].iloc[0]


def test_pareto_rows_are_not_dominated(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    front = frame[frame["pareto"].astype(bool)]
    done = frame[(frame["status"] == "finished") & frame["feasible"].astype(bool)]
    for _, p in front.iterrows():
        better = done[(done["accuracy"] >= p["accuracy"]) & (done["monthly_usd"] <= p["monthly_usd"])
                      & ((done["accuracy"] > p["accuracy"]) | (done["monthly_usd"] < p["monthly_usd"]))]  # fmt: skip
        assert better.empty
    assert front["test_accuracy"].notna().all(), "every Pareto candidate is checked on the test split"


def test_optuna_study_is_persistent_and_complete(run_dir):
    study = optuna.load_study(study_name=run_dir.name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    states = [t.state for t in study.get_trials()]
    assert len(states) == 8
    assert optuna.trial.TrialState.RUNNING not in states
    frame = pd.read_csv(run_dir / "trials.csv")
    assert states.count(optuna.trial.TrialState.FAIL) == int((frame["status"] == "failed").sum())


def test_search_fails_only_when_every_trial_fails(write_config, tmp_path, capsys):
    config = write_config(
        task={"name": "tests.search.failing_task:make_task"},
        search={"trials": 3, "max_concurrent": 2},
        space={"prune_method": "structured", "prune_ratio": {"low": 0.3, "high": 0.6}, "bits": 32},
    )
    out = tmp_path / "runs"
    assert main(["search", str(config), "--out", str(out)]) == 1
    assert "every trial failed" in capsys.readouterr().err
    (run_dir,) = list(out.iterdir())
    frame = pd.read_csv(run_dir / "trials.csv")
    assert len(frame) == 3 and (frame["status"] == "failed").all()
    assert frame["error"].str.contains("cannot build a serving batch").all()
