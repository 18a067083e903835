"""A Ray Serve config (`serve deploy` format) sized from the cost model's answer.

The cost model counts instances: `replicas` instances of `instance_type`, each
sustaining the measured throughput scaled to the whole instance (CPU: the
per-core throughput × physical cores × the SMT yield; GPU: one model copy per GPU).
Serve counts model copies, so one CPU instance becomes floor(cores × yield / threads)
Serve replicas (at least one), which share the instance's vCPUs between them, or
one replica per GPU (GPU). An hourly
traffic profile becomes an autoscaling range from its quietest to its busiest
hour; otherwise the replica count is fixed.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from orchestrator.cost.projection import cores_capacity, num
from orchestrator.cost.catalog import InstanceType
from orchestrator.deploy.manifest import Deployment
from orchestrator.deploy.serve_guard import TOKEN_ENV
from orchestrator.runtimes import REGISTRY

SERVE_CONFIG_NAME = "serve_config.yaml"
DEPLOYMENT_NAME = "HedgerowModel"
IMPORT_PATH = "orchestrator.deploy.serve:app"


def replica_shape(instance: InstanceType | None, threads: int, smt_yield: float = 1.0) -> tuple[int, dict[str, float]]:
    """(Serve replicas per instance, ray_actor_options of one replica), by the cost model's per-core rule."""
    if instance is None:
        return 1, {"num_cpus": threads, "num_gpus": 0}
    if instance.accelerator:
        return instance.accelerator_count, {"num_cpus": 1, "num_gpus": 1}
    per_instance = max(1, math.floor(cores_capacity(instance, smt_yield) / threads))
    return per_instance, {"num_cpus": max(threads, instance.vcpus // per_instance), "num_gpus": 0}


def target_ongoing_requests(
    throughput_sps: float, target_utilization: float, batch_latency_ms: float, wait_s: float
) -> int:
    """Requests one replica holds at the target utilization (Little's law: arrival rate × time in the system)."""
    return max(1, math.ceil(throughput_sps * target_utilization * (batch_latency_ms / 1000 + wait_s)))


def build_serve_config(
    *,
    app_name: str,
    model_path: str,
    runtime: str,
    deployment: Deployment,
    instance: InstanceType | None,
    threads: int,
    throughput_sps: float,
    batch_latency_p95_ms: float,
    serving_batch_size: int,
    target_utilization: float,
    latency_slo_p95_ms: float | None,
    endpoint_url: str | None = None,
    smt_yield: float = 1.0,
    require_token: bool = False,
) -> dict[str, Any]:
    """The config as a dict; `dump_serve_config` writes it with the derivation as comments.

    The batch wait is a tenth of the latency SLO (at most 50 ms); without one (an LLM's traffic, whose SLOs are per
    token) requests do not wait for a batch to fill. `require_token`: every request needs the bearer token in
    HEDGEROW_SERVE_TOKEN, which the config names as `${HEDGEROW_SERVE_TOKEN}` (Ray expands it from the serving
    node's environment when it starts a replica), never in clear; a replica without it refuses to start.
    """
    per_instance, actor_options = replica_shape(instance, threads, smt_yield)
    wait_s = 0.0 if latency_slo_p95_ms is None else round(min(0.05, latency_slo_p95_ms / 1000 * 0.1), 4)
    target = target_ongoing_requests(throughput_sps, target_utilization, batch_latency_p95_ms, wait_s)
    spec: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": max(2 * serving_batch_size, 2 * target),
        "ray_actor_options": actor_options,
    }
    if deployment.hourly_replicas:
        spec["autoscaling_config"] = {
            "min_replicas": min(deployment.hourly_replicas) * per_instance,
            "initial_replicas": max(deployment.hourly_replicas) * per_instance,
            "max_replicas": max(deployment.hourly_replicas) * per_instance,
            "target_ongoing_requests": target,
        }
    else:
        spec["num_replicas"] = (deployment.replicas or 1) * per_instance
    on_gpu = instance is not None and instance.accelerator is not None
    args: dict[str, Any] = {
        "model_path": model_path,
        "runtime": REGISTRY.weights() if on_gpu else runtime,  # the programs were exported on the CPU; weights load anywhere
        "device": "cuda" if on_gpu else "cpu",
        "max_batch_size": serving_batch_size,
        "batch_wait_timeout_s": wait_s,
        "threads": threads,
    }
    if endpoint_url:
        args["endpoint_url"] = endpoint_url
    application: dict[str, Any] = {"name": app_name, "route_prefix": "/", "import_path": IMPORT_PATH, "args": args}
    if require_token:
        args["require_token"] = True
        application["runtime_env"] = {"env_vars": {TOKEN_ENV: "${" + TOKEN_ENV + "}"}}
    application["deployments"] = [spec]
    return {"proxy_location": "EveryNode", "http_options": {"host": "0.0.0.0", "port": 8000}, "applications": [application]}


def explain(
    deployment: Deployment, instance: InstanceType | None, threads: int, config: dict[str, Any], smt_yield: float = 1.0
) -> list[str]:
    """The arithmetic behind the replica numbers, one line each (the YAML's comments, the README's list)."""
    spec = config["applications"][0]["deployments"][0]
    per_instance, options = replica_shape(instance, threads, smt_yield)
    lines = []
    if instance is None:
        lines.append("no feasible instance type was priced: one replica, sized by hand")
    elif instance.accelerator:
        lines.append(
            f"{instance.instance_type} has {instance.accelerator_count} × {instance.accelerator}: one model copy per GPU"
        )
    else:
        capacity = cores_capacity(instance, smt_yield)
        yield_text = (
            f" × smt_yield {num(smt_yield)} ({instance.threads_per_core} threads per core)"
            if instance.threads_per_core > 1
            else " (1 thread per core)"
        )
        lines.append(
            f"{instance.instance_type} has {instance.physical_cores} physical core(s){yield_text} = {num(capacity)} "
            f"single-thread capacity; the trial measured with {threads} thread(s): floor({num(capacity)} / {threads}) "
            f"= {per_instance} Serve replica(s) per instance, {num(options['num_cpus'])} of its {instance.vcpus} vCPUs each"
        )
    if "autoscaling_config" in spec:
        auto = spec["autoscaling_config"]
        lines.append(
            f"hourly traffic profile: {min(deployment.hourly_replicas or [0])}..{max(deployment.hourly_replicas or [0])} instances "
            f"-> autoscaling {auto['min_replicas']}..{auto['max_replicas']} replicas, target {auto['target_ongoing_requests']} ongoing requests each"
        )
    else:
        lines.append(f"cost model: {deployment.replicas or 1} instance(s) -> num_replicas {spec['num_replicas']}")
    lines.append(
        f"max_ongoing_requests {spec['max_ongoing_requests']}: at least two serving batches, so @serve.batch can fill a batch "
        "while the previous one runs"
    )
    return lines


def dump_serve_config(config: dict[str, Any], lines: list[str]) -> str:
    """The YAML text, with the derivation as a comment header."""
    header = [
        "# Ray Serve config for `serve deploy serve_config.yaml` (or `serve run serve_config.yaml`).",
        "# Written by `hedgerow export`; replicas come from the cost model:",
        *[f"#   {line}" for line in lines],
        "# The serving nodes need: pip install 'ray[serve]' and hedgerow (for orchestrator.deploy.serve).",
        *(
            [
                f"# Every request needs 'Authorization: Bearer <token>', the token in {TOKEN_ENV} on each serving node",
                "# (export it before `ray start`; runtime_env names the variable, never the token).",
            ]
            if config["applications"][0]["args"].get("require_token")
            else [
                "# The HTTP endpoint has no authentication of its own: put it behind a load balancer or gateway that has,",
                f"# or set {TOKEN_ENV} on the serving nodes so every request needs it as a bearer token.",
            ]
        ),
        "# Bodies over max_body_bytes (default 8 MiB) are a 413; a body not all arrived in body_timeout_s (30 s) a 408.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False)
