"""What every export writes about serving, whatever the model: library versions, the cost model's deployment,
the catalog instance it names, and the Ray Serve config sized from them."""

from __future__ import annotations

import importlib.metadata
import logging
import platform
from pathlib import Path

import orchestrator
from orchestrator.cost.catalog import InstanceType, load_catalog
from orchestrator.deploy.manifest import Deployment
from orchestrator.deploy.runfolder import RunFolder, Trial
from orchestrator.deploy.s3 import redact
from orchestrator.deploy.serve_config import SERVE_CONFIG_NAME, build_serve_config, dump_serve_config, explain

log = logging.getLogger(__name__)
_VERSIONED = ("torch", "onnxruntime", "onnx", "safetensors", "torch-pruning", "torchao", "numpy", "boto3", "ray")


def versions() -> dict[str, str | None]:
    """Versions of Python, hedgerow and the libraries an export depends on."""
    found: dict[str, str | None] = {"python": platform.python_version(), "hedgerow": orchestrator.__version__}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def deployment_of(trial: Trial, serving_batch_size: int) -> Deployment:
    """The cost model's answer for the trial, as the manifest records it."""
    cost = trial.record.cost
    chosen = next((c for c in cost.per_instance if c.instance_type == cost.instance_type), None)
    return Deployment(
        instance_type=cost.instance_type,
        accelerator=cost.accelerator,
        replicas=cost.replicas,
        hourly_replicas=chosen.hourly_replicas if chosen is not None else None,
        monthly_usd=cost.monthly_usd,
        projected=cost.projected,
        region=cost.region,
        catalog_as_of=str(cost.catalog_as_of),
        reason=cost.reason,
        serving_batch_size=serving_batch_size,
    )


def instance_of(run: RunFolder, instance_type: str | None) -> InstanceType | None:
    """The catalog's entry for the chosen instance type (None: none was chosen, or the catalog is gone)."""
    if not instance_type:
        return None
    deployment = run.config.deployment
    try:
        catalog = load_catalog(
            None if deployment.catalog == "bundled" else deployment.catalog, region=deployment.region
        )
        return catalog.get(instance_type)
    except Exception as exc:  # noqa: BLE001  (a catalog moved away: size the config per instance instead)
        log.warning("catalog %s unavailable (%s): one Serve replica per instance", deployment.catalog, exc)
        return None


def write_serve_config(root: Path, run: RunFolder, trial: Trial, deployment: Deployment, instance: InstanceType | None,
                        runtime: str, final_location: str, endpoint_url: str | None,
                        require_token: bool = False) -> list[str]:  # fmt: skip
    """serve_config.yaml sized by the cost model's answer; returns the lines that explain it (for the README).

    require_token: the app refuses requests without the bearer token of $HEDGEROW_SERVE_TOKEN on its nodes.
    """
    threads = int(trial.row.get("threads") or 1)
    traffic = run.config.traffic
    serve = build_serve_config(
        app_name=f"hedgerow-{trial.trial_id}",
        model_path=final_location,
        runtime=runtime,
        deployment=deployment,
        instance=instance,
        threads=threads,
        throughput_sps=float(trial.row.get("throughput_sps") or 1.0),
        # An LLM's traffic may have no latency_slo_p95_ms (its SLOs are per token): no batch latency to size from then.
        batch_latency_p95_ms=float(trial.row.get("batch_latency_p95_ms") or traffic.latency_slo_p95_ms or 0.0),
        serving_batch_size=traffic.serving_batch_size,
        target_utilization=traffic.target_utilization,
        latency_slo_p95_ms=traffic.latency_slo_p95_ms,
        endpoint_url=redact(endpoint_url) if endpoint_url else None,  # never a user:password@ in a shipped file
        smt_yield=run.config.deployment.smt_yield,
        require_token=require_token,
    )
    serve_lines = explain(deployment, instance, threads, serve, run.config.deployment.smt_yield)
    (root / SERVE_CONFIG_NAME).write_text(dump_serve_config(serve, serve_lines))
    return serve_lines
