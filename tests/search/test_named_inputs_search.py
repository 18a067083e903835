"""A model fed named tensors goes through a real search, its report and its export, as a CNN does."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from orchestrator.cli import main

pytestmark = pytest.mark.slow


def test_a_named_input_model_searches_reports_and_exports(tmp_path, capsys):
    config = {
        "task": {"name": "tests.tasks.named_inputs_task:make_task"},
        "objective": {"max_quality_drop": 0.05},
        "traffic": {"peak_rps": 20000, "latency_slo_p95_ms": 5000, "serving_batch_size": 64, "min_replicas": 1},
        "deployment": {"instance_filter": ["c7i.*", "c7g.*"]},
        "search": {"trials": 4, "max_concurrent": 2, "sampler": "random", "seed": 0,
                   "measure_batch_repeats": 3, "measure_latency_repeats": 5},
        "space": {"prune_method": {"choices": ["none", "structured"]}, "prune_ratio": 0.5,
                  "bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 20]}},
    }  # fmt: skip
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["search", str(path), "--out", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / capsys.readouterr().out.strip().splitlines()[-1].split("/")[-1]
    frame = pd.read_csv(run / "trials.csv")
    assert (frame["status"] == "finished").all(), frame["error"].dropna().tolist()
    assert (run / "report.html").is_file() and "batch 64" in (run / "report.md").read_text()
    assert main(["export", str(run), "--dest", str(tmp_path / "out")]) == 0
    folder = capsys.readouterr().out.strip().splitlines()[-1]
    manifest = json.loads(open(f"{folder}/manifest.json").read())
    assert sorted(manifest["architecture"]["named_inputs"]) == ["features", "mask"]
