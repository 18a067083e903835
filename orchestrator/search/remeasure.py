"""Measure the baseline and the Pareto candidates again on each instance type the cluster has, and price them there.

A Ray node says which catalog instance type it is with the node label
`hedgerow.io/instance-type` (`ray start --labels hedgerow.io/instance-type=c7i.large`;
infra/ sets it from the instance metadata). When a search ends, every candidate worth
deploying (the baseline, and each Pareto candidate within the quality bound) is rebuilt
from its recipe and measured once more in a Ray task pinned to one node of each labelled
type, interleaved against the teacher on that node, as a trial measures. The cost model
then prices that instance type from the figure measured there ("measured on this
instance type"); every other type stays projected. An embedded search has no labelled
node and skips all of this.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pandas as pd

from orchestrator.cost.catalog import Catalog
from orchestrator.cost.model import CandidateMetrics, CostResult, InstanceCost, price_candidate

INSTANCE_TYPE_LABEL = "hedgerow.io/instance-type"


def _warn(message: str) -> None:
    print(f"[hedgerow] {message}", file=sys.stderr, flush=True)


def labelled_nodes(catalog: Catalog, cpus_needed: float = 1.0, warn: Callable[[str], None] = _warn) -> dict[str, str]:
    """{instance type: node id} of one alive node per labelled CPU type that can run a measurement.

    A type the catalog lacks, a GPU type (its trials already ran and were measured there) and a
    node without the CPUs a measurement asks for are each warned about and left out.
    """
    import ray

    cpu_types = {inst.instance_type for inst in catalog.instances if inst.accelerator is None}
    gpu_types = {inst.instance_type for inst in catalog.instances if inst.accelerator is not None}
    found: dict[str, str] = {}
    for node in sorted(ray.nodes(), key=lambda n: n["NodeID"]):
        label = (node.get("Labels") or {}).get(INSTANCE_TYPE_LABEL)
        if not node.get("Alive") or not label or label in found:
            continue
        where = f"node {node['NodeID'][:12]} says it is {label!r} ({INSTANCE_TYPE_LABEL})"
        if label in gpu_types:
            continue  # GPU instances are priced from the trials that ran on their GPU
        if label not in cpu_types:
            warn(f"{where}, which the catalog ({catalog.region}) does not have; it is not measured on, and the search goes on")
            continue
        if float((node.get("Resources") or {}).get("CPU", 0)) < cpus_needed:
            warn(f"{where} but offers no {cpus_needed:g} CPU(s) for a measurement; {label} stays projected")
            continue
        found[label] = node["NodeID"]
    return found


def _measure_here(task: Any, recipe_json: dict, settings_json: dict, serving_batch: int, threads: int,
                  instance_type: str, teacher_fingerprint: str | None) -> dict:  # fmt: skip
    """Rebuild one candidate on this node and measure it as a trial does; runs as a pinned Ray task."""
    import ray
    import torch

    from orchestrator.threads import torch_threads
    from orchestrator.compress.recipe import Recipe, apply_recipe
    from orchestrator.config import SearchSettings
    from orchestrator.runtimes import kernel_archs
    from orchestrator.search.trial import candidate_metrics, measure_candidate

    recipe = Recipe.model_validate(recipe_json)
    settings = SearchSettings.model_validate(settings_json)
    with torch_threads(threads):
        teacher = task.teacher()
        compressed = apply_recipe(task, recipe, device=torch.device("cpu"), teacher=teacher, serving_batch_size=serving_batch)
        batch = task.example_batch(serving_batch)
        measured = measure_candidate(compressed, teacher, batch, settings, threads, teacher_fingerprint=teacher_fingerprint)
    metrics = candidate_metrics(measured, recipe.bits, instance_type, kernel_archs(compressed.record.steps))
    return {"metrics": metrics.model_dump(mode="json"), "node_id": ray.get_runtime_context().get_node_id(),
            "host": measured.metrics.device.name}  # fmt: skip


def remeasure(
    candidates: pd.DataFrame,
    recipes: dict[str, dict],
    prepared: Any,
    teacher_fingerprint: str | None,
    nodes: dict[str, str],
) -> list[dict[str, Any]]:
    """Measure each candidate on one node of each labelled type; one record per (trial, instance type).

    `recipes` maps trial id to the recipe (JSON) that rebuilds it. A measurement that fails is
    recorded with its reason, and that type stays projected for that candidate.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator.errors import describe_error

    config = prepared.config
    settings = config.search
    threads = max(1, int(settings.resources_per_trial.cpu))
    remote = ray.remote(_measure_here)
    task_ref = ray.put(prepared.task)
    pending = []
    for _, row in candidates.iterrows():
        for instance_type, node_id in sorted(nodes.items()):
            ref = remote.options(
                num_cpus=settings.resources_per_trial.cpu,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(task_ref, recipes[row["trial_id"]], settings.model_dump(mode="json"),
                     config.traffic.serving_batch_size, threads, instance_type, teacher_fingerprint)  # fmt: skip
            pending.append((str(row["trial_id"]), instance_type, node_id, ref))
    out = []
    for trial_id, instance_type, node_id, ref in pending:
        try:
            done = ray.get(ref)
        except Exception as exc:  # one node's failure leaves that type projected for this candidate
            out.append({"trial_id": trial_id, "instance_type": instance_type, "node_id": node_id,
                        "error": describe_error(exc)})  # fmt: skip
            continue
        out.append({"trial_id": trial_id, "instance_type": instance_type, "node_id": done["node_id"],
                    "host": done["host"], "metrics": done["metrics"], "error": None})  # fmt: skip
    return out


def price_measured(measurement: dict, projected: CostResult, prepared: Any) -> tuple[InstanceCost | None, dict]:
    """The measured instance's cost, and a row setting it beside the projection for that type."""
    config = prepared.config
    instance_type = measurement["instance_type"]
    before = next((c for c in projected.per_instance if c.instance_type == instance_type), None)
    row: dict[str, Any] = {
        "trial_id": measurement["trial_id"],
        "instance_type": instance_type,
        "node_id": measurement["node_id"][:12],
        "projected_throughput_sps": before.throughput_sps if before else None,
        "projected_monthly_usd": before.monthly_usd if before else None,
        "measured_throughput_sps": None,
        "measured_monthly_usd": None,
        "projection_error": None,
        "measured_reason": measurement.get("error"),
    }
    if measurement.get("error"):
        return None, row
    one_type = Catalog(
        path=prepared.catalog.path,
        region=prepared.catalog.region,
        as_of=prepared.catalog.as_of,
        instances=[i for i in prepared.catalog.instances if i.instance_type == instance_type],
        accelerators=prepared.catalog.accelerators,
    )
    metrics = CandidateMetrics.model_validate(measurement["metrics"])
    cost = price_candidate(metrics, config.traffic, one_type, smt_yield=config.deployment.smt_yield).per_instance[0]
    row.update(
        measured_throughput_sps=cost.throughput_sps,
        measured_monthly_usd=cost.monthly_usd,
        measured_reason=cost.reason if cost.throughput_sps is None or not cost.feasible else cost.projection_method,
    )
    if cost.throughput_sps and row["projected_throughput_sps"]:
        row["projection_error"] = round(row["projected_throughput_sps"] / cost.throughput_sps - 1, 4)
    return cost, row
