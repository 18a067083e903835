"""Fixtures for export tests: a hand-written run folder, S3-compatible servers on 127.0.0.1, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.config import parse_config, to_yaml
from orchestrator.cost.catalog import load_catalog
from orchestrator.cost.model import CandidateMetrics, price_candidate
from orchestrator.loadtest.serving import free_port
from orchestrator.threads import torch_threads
from orchestrator.report.records import Candidate, Summary, TrialRecord
from orchestrator.report.results import COLUMNS

# One candidate per exported weights format; a few distillation steps keep each rebuild under a second.
RECIPES = {
    "fp32prun": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=5),
    "int8stat": Recipe(prune_method="structured", prune_ratio=0.5, bits=8, kd_steps=5),
    "bf16half": Recipe(prune_method="structured", prune_ratio=0.3, bits=16, kd_steps=5),
}
TRIAL_THREADS = 1
PROFILE = [3000.0] * 8 + [40000.0] * 12 + [12000.0] * 4  # quiet nights, busy days: the Serve config autoscales
CONFIG = {
    "task": {"name": "digits"},
    "objective": {"max_quality_drop": 0.05},
    "traffic": {"hourly_rps_profile": PROFILE, "latency_slo_p95_ms": 250, "serving_batch_size": 64, "min_replicas": 1},
    "deployment": {"instance_filter": ["c7i.*", "m7i.*"]},
    "search": {"trials": 3, "seed": 0},
    "space": {"prune_method": {"choices": ["structured"]}, "bits": {"choices": [32, 16, 8]}},
}


def _metrics(recipe: Recipe) -> dict:
    """Plausible measured figures (tests do not time anything)."""
    speed = {32: 6000.0, 16: 1500.0, 8: 12000.0}[recipe.bits]
    return {
        "params": 200_000, "nonzero_params": 200_000, "size_bytes": 800_000 // (32 // recipe.bits), "peak_mem_bytes": 8_000_000,
        "throughput_sps": speed, "batch_latency_p50_ms": 64_000 / speed, "batch_latency_p95_ms": 80_000 / speed,
        "latency_p50_ms": 0.4, "latency_p95_ms": 0.8, "serving_batch_size": 64, "flops_per_sample": None,
        "device": {"kind": "cpu", "name": "test cpu", "capability": "AVX2", "arch": "x86_64", "threads": TRIAL_THREADS},
    }  # fmt: skip


def write_run(root: Path, task, teacher, recipes: dict[str, Recipe], recommended: str, device: str = "cpu") -> Path:
    """A run folder as `hedgerow search` writes it, with real compressions and a real cost model, no Ray."""
    config = parse_config(CONFIG)
    catalog = load_catalog(None, region="us-east-1", instance_filter=CONFIG["deployment"]["instance_filter"])
    run = root / "digits-20260101-000000-abcdef"
    (run / "trials").mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(config))
    rows = []
    for trial_id, recipe in recipes.items():
        with torch_threads(TRIAL_THREADS):  # as a trial runs: the thread count changes training's rounding
            compressed = apply_recipe(task, recipe, device=device, teacher=teacher)
            quality = task.evaluate(compressed.model, "val")
        metrics = _metrics(recipe)
        cost = price_candidate(
            CandidateMetrics(
                throughput_sps=metrics["throughput_sps"], batch_latency_p95_ms=metrics["batch_latency_p95_ms"],
                peak_mem_bytes=metrics["peak_mem_bytes"], size_bytes=metrics["size_bytes"], device_kind="cpu",
                device_name="test cpu", cpu_threads=1, bits=recipe.bits,
            ),
            config.traffic,
            catalog,
        )  # fmt: skip
        row = {
            "trial_id": trial_id, "status": "finished", "recipe_key": recipe.key(), "baseline": False,
            **{k: v for k, v in recipe.model_dump().items() if k != "version"},
            "quality_metric": "accuracy", "quality": quality["value"], "accuracy": quality["value"], "accuracy_drop": 0.0,
            "params": metrics["params"], "size_bytes": metrics["size_bytes"], "peak_mem_bytes": metrics["peak_mem_bytes"],
            "throughput_sps": metrics["throughput_sps"], "batch_latency_p95_ms": metrics["batch_latency_p95_ms"],
            "latency_p50_ms": 0.4, "latency_p95_ms": 0.8, "device": "test cpu", "device_kind": "cpu", "threads": TRIAL_THREADS,
            "instance_type": cost.instance_type, "replicas": cost.replicas, "monthly_usd": cost.monthly_usd,
            "feasible": cost.feasible, "pareto": True, "test_accuracy": quality["value"],
        }  # fmt: skip
        record = TrialRecord(
            row=row, recipe=recipe, compression=compressed.record, metrics=metrics, quality=dict(quality), cost=cost
        )
        record.write(run / "trials" / f"{recipe.key()}.json")
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame[COLUMNS].to_csv(run / "trials.csv", index=False)
    summary = Summary(
        run_id=run.name, task=config.task.name, quality_metric=config.objective.metric,
        max_quality_drop=config.objective.max_quality_drop, n_trials=len(rows), n_finished=len(rows),
        recommended=Candidate(trial_id=recommended),
    )  # fmt: skip
    summary.write(run / "summary.json")
    return run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, digits_task, teacher) -> Path:
    """A hand-written run folder with one fp32, one int8 and one bf16 candidate; int8 is recommended."""
    return write_run(tmp_path_factory.mktemp("runs"), digits_task, teacher, RECIPES, recommended="int8stat")


@pytest.fixture(scope="session")
def exports(run_dir, tmp_path_factory):
    """Each candidate of the run exported to a local folder: {trial_id: ExportResult}."""
    from orchestrator.deploy import export_trial

    dest = tmp_path_factory.mktemp("exports")
    return {trial_id: export_trial(run_dir, trial_id, dest) for trial_id in RECIPES}


@pytest.fixture(scope="session")
def val_inputs(digits_task):
    return digits_task.data("val")[0]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """`hedgerow ARGV` in this process, with the export verb registered; (exit status, stdout, stderr)."""
    from orchestrator import _cli_verbs
    from orchestrator.cli import main
    from orchestrator.deploy.cli import register

    if register not in _cli_verbs.REGISTRARS:
        _cli_verbs.REGISTRARS.append(register)  # until the verb is wired into orchestrator/_cli_verbs.py
    capsys.readouterr()
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


# ---- S3-compatible servers -----------------------------------------------------------------------------


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"no server came up on 127.0.0.1:{port} within {timeout}s")


class MotoServer:
    """moto's S3 server on 127.0.0.1, in a thread of this process: stopping it keeps the buckets in memory,
    so a restart on the same port serves the objects uploaded before the stop (as a real store would)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.running = False

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_for_port(self.port)
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._server.stop()
            self.running = False

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def aws_env():
    """Test credentials in the environment (the standard chain's first link); nothing from ~/.aws."""
    with pytest.MonkeyPatch.context() as mp:
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            mp.delenv(key, raising=False)
        for key, value in AWS_TEST_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def s3_server(aws_env):
    """A running moto S3 server for the session; tests that stop it must start it again."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server, request):
    """A fresh bucket per test (moto keeps every bucket in memory for the session)."""
    name = "hedgerow-" + "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def fast_s3(s3_server):
    """Publish settings for tests: few retries, short backoff, and multipart from 64 KiB."""
    from orchestrator.deploy.s3 import S3Settings

    return S3Settings(
        endpoint_url=s3_server.url, multipart_threshold=64 * 1024, max_attempts=2, verify_attempts=2,
        backoff_s=0.05, connect_timeout_s=2, read_timeout_s=20,
    )  # fmt: skip


@pytest.fixture
def auth_s3_server(aws_env, tmp_path):
    """A moto server in a subprocess that checks credentials; yields (url, valid key id, valid secret, bucket)."""
    import boto3

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}  # the first 4 requests set up a user and a bucket
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env
    )
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
        iam.create_user(UserName="deployer")
        key = iam.create_access_key(UserName="deployer")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="deployer", PolicyName="all", PolicyDocument=json.dumps(policy))
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        )  # fmt: skip
        s3.create_bucket(Bucket="models")
        yield url, key["AccessKeyId"], key["SecretAccessKey"], "models"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
