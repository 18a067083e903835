"""One export from a real search run folder (real Ray, real trials): the recommended trial round-trips."""

from __future__ import annotations

import pytest
import torch
import yaml

from orchestrator.cli import main
from orchestrator.deploy import load
from tests.deploy.conftest import run_cli

pytestmark = pytest.mark.slow

SEARCH = {
    "task": {"name": "digits"},
    "objective": {"max_quality_drop": 0.05},
    "traffic": {"peak_rps": 2000, "latency_slo_p95_ms": 2000, "serving_batch_size": 64, "min_replicas": 1},
    "deployment": {"instance_filter": ["c7i.*", "m7i.*"]},
    "search": {
        "trials": 3,
        "max_concurrent": 2,
        "sampler": "random",
        "seed": 1,
        "measure_batch_repeats": 3,
        "measure_latency_repeats": 5,
    },
    "space": {
        "prune_method": {"choices": ["structured"]},
        "prune_ratio": {"low": 0.3, "high": 0.5},
        "bits": {"choices": [32, 8]},
        "kd_steps": {"choices": [10]},
    },
}


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search")
    config = folder / "search.yaml"
    config.write_text(yaml.safe_dump(SEARCH))
    assert main(["search", str(config), "--out", str(folder / "runs")]) == 0
    (run,) = list((folder / "runs").iterdir())
    return run


def test_the_recommended_trial_of_a_real_run_exports_and_loads_back(search_run, tmp_path, capsys, digits_task):
    import json

    recommended = json.loads((search_run / "summary.json").read_text())["recommended"]
    assert recommended, "the search recommended nothing; the test config should make every candidate feasible"
    status, out, err = run_cli(["export", str(search_run), "--dest", str(tmp_path)], capsys)
    assert status == 0, err
    folder = out.strip().splitlines()[-1]
    model = load(folder)
    manifest = model.manifest
    assert manifest.trial_id == recommended["trial_id"] and manifest.run_id == search_run.name
    assert manifest.quality.rebuilt_value == manifest.quality.trial_value  # seeded: the trial, reproduced exactly
    assert manifest.deployment.instance_type == recommended["instance_type"]
    assert manifest.deployment.replicas == recommended["replicas"]
    inputs, targets = digits_task.data("val")
    accuracy = (model.predict(inputs).argmax(1) == targets).float().mean().item()
    assert accuracy == pytest.approx(manifest.quality.trial_value)
    config = yaml.safe_load(open(f"{folder}/serve_config.yaml"))
    assert config["applications"][0]["deployments"][0]["num_replicas"] >= recommended["replicas"]
    assert torch.equal(load(folder, runtime="torch").predict(inputs[:8]), model.predict(inputs[:8]))


def test_export_refuses_a_teacher_other_than_the_one_the_search_used(search_run, tmp_path, capsys, teacher):
    import json
    import shutil

    from orchestrator.tasks import tensor_fingerprint

    run = tmp_path / search_run.name
    shutil.copytree(search_run, run)
    meta = json.loads((run / "run.json").read_text())
    assert meta["teacher_fingerprint"] == tensor_fingerprint(teacher)  # the search recorded its teacher
    meta["teacher_fingerprint"] = "0" * 64
    (run / "run.json").write_text(json.dumps(meta))
    status, _, err = run_cli(["export", str(run), "--dest", str(tmp_path / "out")], capsys)
    assert status == 1 and "is not the one run" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("manifest.json"))
