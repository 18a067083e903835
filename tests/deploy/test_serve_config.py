"""The Ray Serve config follows the cost model: instances → model copies, hourly profile → autoscaling."""

from __future__ import annotations

import importlib.util
from datetime import date

import pytest
import yaml

from orchestrator.cost.catalog import InstanceType
from orchestrator.deploy.manifest import Deployment
from orchestrator.deploy.serve_config import build_serve_config, dump_serve_config, explain, target_ongoing_requests


def instance(name="c7i.2xlarge", vcpus=8, accelerator=None, count=0) -> InstanceType:
    return InstanceType(
        instance_type=name, region="us-east-1", accelerator=accelerator, accelerator_count=count,
        accelerator_memory_gib=24.0 if accelerator else 0.0, vcpus=vcpus, physical_cores=vcpus // 2,
        threads_per_core=2, memory_gib=16.0,
        on_demand_usd_per_hour=0.5, cpu_arch="x86_64", source="test", as_of=date(2025, 7, 1),
    )  # fmt: skip


def config(deployment: Deployment, inst: InstanceType | None, threads: int = 2, smt_yield: float = 1.0) -> dict:
    return build_serve_config(
        app_name="hedgerow-t", model_path="s3://b/p/run/t", runtime="torch", deployment=deployment, instance=inst,
        threads=threads, throughput_sps=5000, batch_latency_p95_ms=40, serving_batch_size=64, target_utilization=0.6,
        latency_slo_p95_ms=250, smt_yield=smt_yield,
    )  # fmt: skip


def spec(cfg: dict) -> dict:
    return cfg["applications"][0]["deployments"][0]


@pytest.mark.parametrize(
    ("threads", "smt_yield", "per_instance", "num_cpus"),
    [(2, 1.0, 2, 4), (1, 1.0, 4, 2), (1, 2.0, 8, 1), (2, 1.5, 3, 2), (8, 1.0, 1, 8)],
)
def test_cpu_instances_become_cores_times_yield_over_threads_replicas(threads, smt_yield, per_instance, num_cpus):
    """c7i.2xlarge: 4 cores × 2 threads. Replicas per instance = floor(4 × yield / threads), as the cost model counts."""
    deployment = Deployment(instance_type="c7i.2xlarge", replicas=3, monthly_usd=1.0)
    cfg = config(deployment, instance(), threads=threads, smt_yield=smt_yield)
    assert spec(cfg)["num_replicas"] == 3 * per_instance
    assert spec(cfg)["ray_actor_options"] == {"num_cpus": num_cpus, "num_gpus": 0}
    assert f"= {per_instance} Serve replica(s) per instance" in " ".join(explain(deployment, instance(), threads, cfg, smt_yield))
    assert cfg["applications"][0]["import_path"] == "orchestrator.deploy.serve:app"
    assert cfg["applications"][0]["import_path"] == "orchestrator.deploy.serve:app"
    assert cfg["applications"][0]["args"]["model_path"] == "s3://b/p/run/t"


def test_gpu_instances_get_one_replica_per_gpu():
    cfg = config(
        Deployment(instance_type="g5.12xlarge", replicas=2, monthly_usd=1.0), instance("g5.12xlarge", 48, "A10G", 4)
    )
    assert spec(cfg)["num_replicas"] == 8
    assert spec(cfg)["ray_actor_options"] == {"num_cpus": 1, "num_gpus": 1}
    assert cfg["applications"][0]["args"]["device"] == "cuda" and cfg["applications"][0]["args"]["runtime"] == "eager"


def test_an_hourly_profile_becomes_an_autoscaling_range():
    hourly = [1] * 8 + [5] * 16
    cfg = config(
        Deployment(instance_type="c7i.2xlarge", replicas=5, hourly_replicas=hourly, monthly_usd=1.0), instance()
    )
    auto = spec(cfg)["autoscaling_config"]
    assert (auto["min_replicas"], auto["max_replicas"]) == (2, 10)  # floor(4 cores × 1 / 2 threads) = 2 per instance
    assert auto["target_ongoing_requests"] == target_ongoing_requests(
        5000, 0.6, 40, cfg["applications"][0]["args"]["batch_wait_timeout_s"]
    )
    assert "num_replicas" not in spec(cfg)
    assert spec(cfg)["max_ongoing_requests"] >= 2 * 64


def test_no_feasible_instance_gives_one_replica_and_says_so():
    deployment = Deployment(instance_type=None, replicas=None, monthly_usd=None)
    cfg = config(deployment, None)
    assert spec(cfg)["num_replicas"] == 1
    assert "sized by hand" in explain(deployment, None, 2, cfg)[0]


def test_the_yaml_carries_the_arithmetic_as_comments_and_parses_back():
    deployment = Deployment(instance_type="c7i.2xlarge", replicas=3, monthly_usd=1.0)
    cfg = config(deployment, instance())
    text = dump_serve_config(cfg, explain(deployment, instance(), 2, cfg))
    assert "# " in text and "4 physical core(s) × smt_yield 1 (2 threads per core)" in text and "num_replicas 6" in text
    assert yaml.safe_load(text) == cfg


@pytest.mark.skipif(
    importlib.util.find_spec("starlette") is None, reason="needs Ray Serve's schema: pip install 'ray[serve]'"
)
def test_ray_serve_accepts_the_config():
    from ray.serve.schema import ServeDeploySchema

    hourly = [1] * 12 + [3] * 12
    for deployment in (
        Deployment(instance_type="c7i.2xlarge", replicas=3, monthly_usd=1.0),
        Deployment(instance_type="c7i.2xlarge", replicas=3, hourly_replicas=hourly, monthly_usd=1.0),
    ):
        ServeDeploySchema.model_validate(config(deployment, instance()))
