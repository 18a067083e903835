"""`hedgerow loadtest`: bad input exits 2 naming the argument; a real short load on a digits export writes loadtest.json."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import yaml

from orchestrator.cli import main
from orchestrator.report.loadtest import held_under_load_rows, read_loadtest

HAS_SERVE = importlib.util.find_spec("ray.serve") is not None and importlib.util.find_spec("locust") is not None


def _run(argv, capsys):
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "extra, flag",
    [(["--rate", "0"], "--rate"), (["--rate", "-1"], "--rate"), (["--duration", "601"], "--duration")],
)
def test_bad_rate_or_duration_exits_2_naming_it(tmp_path, capsys, extra, flag):
    status, _, err = _run(["loadtest", str(tmp_path), *extra], capsys)
    assert status == 2 and f"error: {flag}: " in err


def test_a_folder_that_is_neither_an_export_nor_a_run_exits_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    status, _, err = _run(["loadtest", str(tmp_path)], capsys)
    assert status == 2 and "EXPORT|RUN_DIR: " in err and "neither an export" in err


def test_an_unknown_trial_exits_2_naming_it(run_dir, capsys):
    status, _, err = _run(["loadtest", str(run_dir), "--trial", "bf16halv"], capsys)
    assert status == 2 and "--trial: no trial 'bf16halv'" in err
    assert not (run_dir / "exports").exists()  # refused before anything was exported


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SERVE, reason="needs Ray Serve and Locust: pip install 'hedgerow[loadtest]'")
def test_a_short_load_on_a_digits_export_writes_its_verdict(run_dir, capsys):
    rate, duration = 20.0, 3.0
    status, out, err = _run(["loadtest", str(run_dir), "--no-ramp", "--rate", str(rate), "--duration", str(duration)], capsys)
    assert status == 0, err
    export = run_dir / "exports" / run_dir.name / "bf16half"
    path = export / "loadtest.json"
    assert out.strip().splitlines()[-1] == str(path)
    record = read_loadtest(path)
    assert (record.trial_id, record.threads, record.max_batch_size, record.slo_p95_ms) == ("bf16half", 1, 64, 250)
    serve = yaml.safe_load((export / "serve_config.yaml").read_text())["applications"][0]["deployments"][0]
    assert record.promised_rps == pytest.approx(40000 / serve["autoscaling_config"]["max_replicas"])
    measured = json.loads((export / "manifest.json").read_text())["metrics"]["throughput_sps"]  # the trial's, as priced
    assert record.base_rps == rate and record.in_process_sps == measured

    (step,) = record.steps
    expected = rate * duration
    assert abs(step.arrivals - expected) < 4 * math.sqrt(expected)
    assert step.ok + step.errors == step.arrivals
    assert step.errors == 0, step.error_kinds  # 20 requests/s of one digit each: far below what one replica answers
    assert 0 < step.latency_p50_ms <= step.latency_p95_ms <= step.latency_p99_ms
    held = step.latency_p95_ms <= record.slo_p95_ms
    assert record.verdict == ("held" if held else "broke")
    if held:
        assert record.capacity_factor == pytest.approx(step.achieved_sps / measured)
        assert record.capacity_factor_bound == "lower_bound"  # no rate above it was tried
    assert f"verdict: {record.verdict.upper()}" in out

    (row,) = held_under_load_rows(run_dir)
    assert (row["trial_id"], row["verdict"], row["latency_p95_ms"], row["problem"]) == (
        "bf16half", record.verdict, step.latency_p95_ms, None)  # fmt: skip
