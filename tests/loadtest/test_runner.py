"""The settings' checks name their flags; the promise is peak rps over the replicas at the peak."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from orchestrator.config import parse_config
from orchestrator.errors import InputError
from orchestrator.loadtest.runner import MAX_DURATION_S, promise, settings_of
from orchestrator.loadtest.serving import one_replica_config


@pytest.mark.parametrize(
    "values, flag",
    [({"rate_rps": 0}, "--rate"), ({"rate_rps": -3}, "--rate"), ({"duration_s": MAX_DURATION_S + 1}, "--duration"),
     ({"duration_s": 0}, "--duration"), ({"slo_ms": 0}, "--slo-ms"), ({"examples_per_request": 0}, "--examples-per-request")],
)  # fmt: skip
def test_bad_settings_name_their_flag(values, flag):
    with pytest.raises(InputError, match=f"^{flag}: "):
        settings_of(**values)


def _target(traffic: dict | None, replicas: int = 4):
    run = None
    if traffic is not None:
        config = parse_config({"task": {"name": "digits"}, "traffic": traffic, "space": {"bits": 32}})
        run = SimpleNamespace(config=config)
    return SimpleNamespace(run=run, replicas_at_peak=replicas, label="/exports/run/trial")


def test_the_promise_is_peak_requests_over_the_replicas_at_the_peak():
    target = _target({"peak_rps": 1000, "latency_slo_p95_ms": 200}, replicas=8)
    promised, slo, reason = promise(target, settings_of())
    assert (promised, slo) == (125.0, 200)
    assert "peak 1000 rps / 8 Serve replica(s)" in reason
    promised, _, _ = promise(target, settings_of(examples_per_request=5))
    assert promised == 25.0  # samples/s stay the promised ones
    assert promise(target, settings_of(slo_ms=50))[1] == 50


def test_an_export_outside_its_run_needs_the_rate_and_the_slo():
    target = _target(None)
    with pytest.raises(InputError, match="^--slo-ms: "):
        promise(target, settings_of(rate_rps=10))
    with pytest.raises(InputError, match="^--rate: "):
        promise(target, settings_of(slo_ms=100))
    assert promise(target, settings_of(rate_rps=10, slo_ms=100))[:2] == (None, 100)


def test_one_replica_config_keeps_the_exports_serving_settings():
    spec = {"name": "HedgerowModel", "max_ongoing_requests": 256, "ray_actor_options": {"num_cpus": 4, "num_gpus": 0},
            "autoscaling_config": {"min_replicas": 2, "max_replicas": 12, "initial_replicas": 12, "target_ongoing_requests": 9}}
    args = {"model_path": "s3://b/p/run/t", "runtime": "eager", "device": "cpu", "max_batch_size": 128,
            "batch_wait_timeout_s": 0.05, "threads": 2, "endpoint_url": "http://store"}  # fmt: skip
    config = {"applications": [{"name": "hedgerow-t", "route_prefix": "/", "import_path": "orchestrator.deploy.serve:app",
                                "args": args, "deployments": [spec]}]}  # fmt: skip
    app = one_replica_config(config, "/local/export", threads=2, token="tok")
    deployment = app["deployments"][0]
    assert deployment["num_replicas"] == 1 and "autoscaling_config" not in deployment
    assert deployment["max_ongoing_requests"] == 256
    assert deployment["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0}
    assert app["args"]["model_path"] == "/local/export" and "endpoint_url" not in app["args"]
    assert {k: app["args"][k] for k in ("runtime", "max_batch_size", "batch_wait_timeout_s", "threads")} == {
        "runtime": "eager", "max_batch_size": 128, "batch_wait_timeout_s": 0.05, "threads": 2}
    assert app["runtime_env"]["env_vars"]["HEDGEROW_SERVE_TOKEN"] == "tok"
    assert config["applications"][0]["deployments"][0]["autoscaling_config"]["max_replicas"] == 12  # not changed in place
