"""Ray Tune's state on S3 (search.storage_path: s3://…), against a real S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from orchestrator.search.runner import start_search
from tests.deploy.conftest import MotoServer

pytestmark = pytest.mark.slow


@pytest.fixture
def s3(monkeypatch):
    from tests.deploy.conftest import AWS_TEST_ENV

    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)
    server = MotoServer()
    server.start()
    # pyarrow (Ray Tune's storage layer) and boto3 both read the endpoint from the environment; Ray's
    # workers inherit it because the search starts Ray after this point.
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    server.client().create_bucket(Bucket="hedgerow-tune")
    yield server
    server.stop()


def test_search_keeps_tune_state_on_s3_and_it_can_be_restored(s3, write_config, tmp_path):
    from ray import tune

    config = write_config(
        search={"trials": 3, "max_concurrent": 1, "storage_path": "s3://hedgerow-tune/searches"},
        space={"prune_method": {"choices": ["none", "structured"]}, "prune_ratio": {"low": 0.3, "high": 0.6},
               "bits": {"choices": [32, 8]}, "kd_steps": 0},
    )  # fmt: skip
    run_dir = start_search(config, out=tmp_path / "runs")

    frame = pd.read_csv(run_dir / "trials.csv")
    assert len(frame) == 3 and (frame["status"] == "finished").all()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["tune_storage"] == f"s3://hedgerow-tune/searches/{run_dir.name}"

    listed = s3.client().list_objects_v2(Bucket="hedgerow-tune", Prefix=f"searches/{run_dir.name}/tune/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.rsplit("/", 1)[-1].startswith("experiment_state") for k in keys), keys
    assert sum(k.endswith("/result.json") for k in keys) == 3, "each trial's results are on S3"
    assert not (run_dir / "tune").exists(), "Tune wrote nothing locally in the run folder"
    assert tune.Tuner.can_restore(meta["tune_storage"] + "/tune")
