"""Bad input exits 2 with a "did you mean"; a rebuilt candidate that does not match its trial exits 1."""

from __future__ import annotations

import json
import shutil

from tests.deploy.conftest import run_cli


def test_a_folder_that_is_not_a_run_exits_2_and_points_at_the_run_inside(run_dir, capsys):
    status, _, err = run_cli(["export", str(run_dir.parent), "--dest", "/tmp/unused"], capsys)
    assert status == 2
    assert "is not a Hedgerow run folder" in err and f"did you mean {run_dir}" in err


def test_an_unknown_trial_exits_2_with_a_suggestion(run_dir, capsys):
    status, _, err = run_cli(["export", str(run_dir), "--trial", "int8stab", "--dest", "/tmp/unused"], capsys)
    assert status == 2
    assert "no trial 'int8stab'" in err and "did you mean 'int8stat'" in err


def test_a_missing_run_folder_exits_2(tmp_path, capsys):
    status, _, err = run_cli(["export", str(tmp_path / "nope"), "--dest", str(tmp_path)], capsys)
    assert status == 2 and "is not a folder" in err


def test_an_unfinished_trial_exits_2(run_dir, tmp_path, capsys):
    import pandas as pd

    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    frame = pd.read_csv(copy / "trials.csv")
    frame.loc[frame["trial_id"] == "bf16half", "status"] = "failed"
    frame.to_csv(copy / "trials.csv", index=False)
    status, _, err = run_cli(["export", str(copy), "--trial", "bf16half", "--dest", str(tmp_path / "out")], capsys)
    assert status == 2 and "did not finish" in err


def test_quality_that_does_not_match_the_trial_exits_1_and_writes_nothing(run_dir, tmp_path, capsys):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    record_path = next((copy / "trials").glob("*.json"))
    record = json.loads(record_path.read_text())
    trial_id = record["row"]["trial_id"]
    record["quality"]["value"] -= 0.05  # as if the search had used another teacher
    record_path.write_text(json.dumps(record))
    out = tmp_path / "out"
    status, stdout, err = run_cli(["export", str(copy), "--trial", trial_id, "--dest", str(out)], capsys)
    assert status == 1
    assert "more than the tolerance of 0.50 points" in err and "teacher" in err
    assert not list(out.rglob("manifest.json"))


def test_a_wider_tolerance_accepts_a_difference_the_default_refuses(run_dir, tmp_path, capsys):
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    record_path = next(
        p for p in (copy / "trials").glob("*.json") if json.loads(p.read_text())["row"]["trial_id"] == "bf16half"
    )
    record = json.loads(record_path.read_text())
    record["quality"]["value"] -= 0.008  # 0.8 points: over the default 0.5, under 1
    record_path.write_text(json.dumps(record))
    argv = ["export", str(copy), "--trial", "bf16half", "--dest", str(tmp_path / "out")]
    status, _, err = run_cli(argv, capsys)
    assert status == 1 and "0.80 points" in err
    status, _, err = run_cli([*argv, "--tolerance", "0.01"], capsys)
    assert status == 0, err


def test_a_tolerance_out_of_range_exits_2(run_dir, capsys):
    status, _, err = run_cli(["export", str(run_dir), "--dest", "/tmp/unused", "--tolerance", "5"], capsys)
    assert status == 2 and "--tolerance" in err
