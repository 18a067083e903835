"""One trial: recipe → apply_recipe → evaluate → measure → cost model → one flat report.

Trials are idempotent: each finished trial's full record is written to
`<run>/trials/<recipe key>.json`, and a trial whose recipe already has a record
reports it instead of recomputing. Ray Tune's restore is at-least-once, so this
is what makes a resumed search run no recipe twice.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from orchestrator.compress.recipe import apply_recipe
from orchestrator.compress.transformer_prune import encoder_shape
from orchestrator.config import SearchSettings
from orchestrator.cost.candidate import rounds_spread
from orchestrator.cost.catalog import Catalog
from orchestrator.cost.model import CandidateMetrics, CostResult, price_candidate
from orchestrator.cost.traffic import Traffic
from orchestrator.measure import Metrics, ReferenceThroughput, measure, reference_throughput
from orchestrator.runtimes import kernel_archs, startup_seconds
from orchestrator.report.records import TrialRecord, read_record
from orchestrator.search.llm_trial import measure_tokens, price as price_tokens, token_columns
from orchestrator.search.space import recipe_from_config
from orchestrator.tasks.base import Evaluation, Task, model_device, paired_drop, quality_drop

NO_PRICE_USD = 1e9  # objective value for a candidate no instance can price at all


@dataclass
class TrialContext:
    """Everything a trial needs, put in Ray's object store once (teacher included)."""

    task: Task
    baseline_quality: float
    max_quality_drop: float
    traffic: Traffic
    catalog: Catalog
    settings: SearchSettings
    records_dir: str
    measured_instance_type: str | None = None
    teacher_fingerprint: str | None = None  # computed once by the driver; keys the machine's teacher reference
    smt_yield: float = 1.0  # deployment.smt_yield: what a core's hyperthreads add (1.0: nothing)
    baseline_items: list[float] | None = None  # the teacher's per-item val scores (Task.per_item_scores), for a paired drop
    teacher_structure: dict[str, list] | None = None  # the teacher encoder's structure (None: no encoder), for its shape


def evaluate_items(task: Task, model: torch.nn.Module, split: str) -> Evaluation:
    """The task's Evaluation of a model; a task that overrides `evaluate` itself is asked through it (no items)."""
    if type(task).evaluate is not Task.evaluate:
        return Evaluation(task.evaluate(model, split), None, {})
    return task.evaluate_items(model, split)


def resolve_device(settings: SearchSettings) -> torch.device:
    """cuda when asked (or auto with a GPU granted to the trial), else cpu."""
    if settings.device == "cuda" or (settings.device == "auto" and settings.resources_per_trial.gpu > 0 and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def record_path(records_dir: str, key: str) -> Path:
    """Where a recipe's finished record lives."""
    return Path(records_dir) / f"{key}.json"


def load_record(records_dir: str, key: str) -> TrialRecord | None:
    """A recipe's finished record, or None (then the recipe runs again): absent, damaged, linked or foreign."""
    return read_record(record_path(records_dir, key))


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Ray Tune trainable: report intermediate quality while distilling, then one final row."""
    from ray import tune

    recipe = recipe_from_config(config, seed=context.settings.seed)
    cached = load_record(context.records_dir, recipe.key())
    if cached is not None:
        tune.report({**cached.row, "cached": True})
        return
    started = time.perf_counter()
    device = resolve_device(context.settings)
    threads = max(1, int(context.settings.resources_per_trial.cpu))
    torch.set_num_threads(threads)
    task = context.task

    def on_eval(step: int, value: float) -> None:
        if step >= recipe.kd_steps:
            return  # the end of distillation: a stop here would save only the measurement; the final row follows
        tune.report({"quality": value, "kd_step": step, "final": False, "objective_monthly_usd": NO_PRICE_USD})

    teacher = task.teacher()
    compressed = apply_recipe(
        task, recipe, device=device, teacher=teacher, on_eval=on_eval, eval_every=context.settings.eval_every_steps,
        serving_batch_size=context.traffic.serving_batch_size,
    )  # fmt: skip
    evaluation = evaluate_items(task, compressed.model, "val")
    quality = evaluation.quality
    archs = kernel_archs(compressed.record.steps)
    if task.generates:
        tokens = measure_tokens(
            compressed.model, teacher, context.traffic, threads, teacher_fingerprint=context.teacher_fingerprint,
            interleave=context.settings.throughput_reference == "teacher",
        )  # fmt: skip
        cost = price_tokens(
            tokens, recipe.bits, context.traffic, context.catalog, context.smt_yield, context.measured_instance_type, archs,
            runtime=recipe.runtime,
        )  # fmt: skip
        measurement = token_columns(tokens, cost, context.traffic.tokens.output_tokens)
        measurement["_size_bytes"] = compressed.record.deployed_size_bytes or tokens.metrics.weight_bytes
        metrics_json, throughput = tokens.metrics.model_dump(mode="json"), tokens.describe()
        startup, startup_method = None, "not measured for generating tasks"
    else:
        batch = task.example_batch(context.traffic.serving_batch_size)
        startup, startup_method = startup_seconds(compressed.model, compressed.record.steps, batch)
        measured = measure_candidate(compressed, teacher, batch, context.settings, threads, teacher_fingerprint=context.teacher_fingerprint)
        cost = price_candidate(
            candidate_metrics(measured, recipe.bits, context.measured_instance_type, archs, runtime=recipe.runtime),
            context.traffic,
            context.catalog,
            smt_yield=context.smt_yield,
        )
        measurement = measurement_columns(measured)
        metrics_json, throughput = measured.metrics.model_dump(mode="json"), measured.describe()
    row = final_row(config, recipe, quality, measurement, cost, compressed.record, context, evaluation)
    row.update(encoder_shape(context.teacher_structure, compressed.record.steps))
    row["startup_seconds"] = round(startup, 3) if startup is not None else None
    row["trial_seconds"] = round(time.perf_counter() - started, 3)
    TrialRecord(
        row=row, recipe=recipe, compression=compressed.record, metrics=metrics_json, throughput=throughput,
        startup={"seconds": row["startup_seconds"], "method": startup_method, "runtime": recipe.runtime},
        quality=dict(quality), diagnostics=evaluation.diagnostics, cost=cost,
    ).write(record_path(context.records_dir, recipe.key()))  # fmt: skip
    tune.report(row)


@dataclass
class Measured:
    """A candidate's measurements and the throughput the cost model takes (see measure/reference.py)."""

    metrics: Metrics
    throughput_sps: float
    reference: ReferenceThroughput | None

    def describe(self) -> dict[str, Any]:
        """How throughput_sps follows from the measurements, for the trial record and the report."""
        if self.reference is None:
            return {"method": "raw: median of this process's serving-batch runs", "throughput_sps": self.throughput_sps}
        return {
            "method": "ratio to the teacher (median over interleaved rounds) × this machine's teacher reference",
            "throughput_sps": self.throughput_sps,
            "ratio_to_teacher": self.metrics.throughput_ratio_to_reference,
            "ratio_rounds": self.metrics.throughput_ratio_rounds,
            "teacher_reference_sps": self.reference.throughput_sps,
            "reference": self.reference.model_dump(mode="json"),
            "raw_throughput_sps": self.metrics.throughput_sps,
        }


def measure_candidate(
    compressed: Any,
    teacher: torch.nn.Module,
    batch: torch.Tensor,
    settings: SearchSettings,
    threads: int,
    reference_root: Path | None = None,
    teacher_fingerprint: str | None = None,
) -> Measured:
    """Measure a compressed candidate as every trial does, and the throughput it will be priced at."""
    model = compressed.model
    size = compressed.record.deployed_size_bytes
    repeats = dict(batch_repeats=settings.measure_batch_repeats, latency_repeats=settings.measure_latency_repeats)
    if settings.throughput_reference == "none":
        metrics = measure(model, batch, threads=threads, size_bytes=size, **repeats)
        return Measured(metrics, metrics.throughput_sps, None)
    teacher = teacher.to(model_device(model)).eval()
    reference = reference_throughput(teacher, batch, threads, root=reference_root, teacher_fingerprint=teacher_fingerprint)
    metrics = measure(model, batch, threads=threads, size_bytes=size, reference=teacher, rounds=settings.measure_rounds, **repeats)
    return Measured(metrics, metrics.throughput_ratio_to_reference * reference.throughput_sps, reference)


def candidate_metrics(
    measured: Measured, bits: int, measured_instance_type: str | None, cpu_archs: list[str] | None, runtime: str | None = None
) -> CandidateMetrics:
    """What the cost model needs from a measured candidate, with the spread of its interleaved rounds (rounds_spread)."""
    m = measured.metrics
    return CandidateMetrics(
        throughput_sps=measured.throughput_sps,
        batch_latency_p95_ms=m.batch_latency_p95_ms,
        latency_p50_ms=m.latency_p50_ms,
        latency_p95_ms=m.latency_p95_ms,
        peak_mem_bytes=m.peak_mem_bytes,
        size_bytes=m.size_bytes,
        device_kind=m.device.kind,
        device_name=m.device.name,
        cpu_threads=m.device.threads if m.device.kind == "cpu" else None,
        cpu_arch=m.device.arch,
        bits=bits,
        flops_per_sample=m.flops_per_sample,
        measured_instance_type=measured_instance_type,
        cpu_archs=cpu_archs,
        runtime=runtime,
        throughput_spread=rounds_spread(m.throughput_ratio_rounds),
    )


def drop_against_teacher(quality, context: TrialContext, items: torch.Tensor | None) -> tuple[float, float | None, float | None]:
    """(drop, ci95_low, ci95_high) against the teacher: paired over the same items where both have per-item scores."""
    drop = quality_drop(context.baseline_quality, quality["value"], quality["higher_is_better"])
    if items is None or context.baseline_items is None or len(items) != len(context.baseline_items) or len(items) < 2:
        return drop, None, None
    seed = context.settings.seed
    mean, low, high = paired_drop(torch.tensor(context.baseline_items, dtype=torch.float64), items, quality["higher_is_better"], seed=seed)
    return mean, low, high


def measurement_columns(measured: Measured) -> dict[str, Any]:
    """trials.csv's measurement columns for a model measured in samples at the serving batch."""
    metrics = measured.metrics
    return {
        "params": metrics.params,
        "nonzero_params": metrics.nonzero_params,
        "peak_mem_bytes": metrics.peak_mem_bytes,
        "throughput_sps": measured.throughput_sps,
        "raw_throughput_sps": metrics.throughput_sps,
        "per_core_sps": measured.throughput_sps / metrics.device.threads if metrics.device.kind == "cpu" else None,
        "throughput_ratio_to_teacher": metrics.throughput_ratio_to_reference,
        "teacher_reference_sps": measured.reference.throughput_sps if measured.reference else None,
        "batch_latency_p95_ms": metrics.batch_latency_p95_ms,
        "latency_p50_ms": metrics.latency_p50_ms,
        "latency_p95_ms": metrics.latency_p95_ms,
        "flops_per_sample": metrics.flops_per_sample,
        "device": metrics.device.name,
        "device_kind": metrics.device.kind,
        "device_capability": metrics.device.capability,
        "threads": metrics.device.threads,
        "_size_bytes": metrics.size_bytes,
    }


def final_row(
    config, recipe, quality, measurement: dict[str, Any], cost: CostResult, record, context: TrialContext,
    evaluation: Evaluation | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The flat result a finished trial reports: every trials.csv column it can know.

    `measurement`: the measurement columns, from `measurement_columns` (samples at a serving batch) or
    llm_trial.token_columns (tokens, for a task that generates)."""
    measurement = dict(measurement)
    size_bytes = measurement.pop("_size_bytes", record.deployed_size_bytes)
    drop, drop_low, drop_high = drop_against_teacher(quality, context, evaluation.items if evaluation is not None else None)
    diagnostics = evaluation.diagnostics if evaluation is not None else {}
    cheapest_any = min((c.monthly_usd for c in cost.per_instance if c.monthly_usd is not None), default=NO_PRICE_USD)
    return {
        "final": True,
        "baseline": bool(config.get("baseline", False)),
        "recipe_key": recipe.key(),
        **{k: v for k, v in recipe.model_dump(mode="json").items() if k != "version"},
        "quality_metric": quality["metric"],
        "quality": quality["value"],
        "quality_ci95_low": quality["ci95_low"],
        "quality_ci95_high": quality["ci95_high"],
        "quality_n": quality["n_examples"],
        "quality_drop": drop,
        "quality_drop_ci95_low": drop_low,  # paired: a bootstrap over items of teacher minus candidate (None: no items)
        "quality_drop_ci95_high": drop_high,
        **diagnostics,
        "diagnostic_metrics": ",".join(diagnostics) or None,  # the columns above a task reported beside its metric
        "accuracy": quality["value"],  # deprecated aliases of quality and quality_drop (every metric), for one release
        "accuracy_drop": drop,
        "size_bytes": size_bytes,
        "sparse_size_bytes": record.sparse_size_bytes,
        **measurement,
        "accelerated": record.accelerated,
        "kernel_archs": ",".join(kernel_archs(record.steps) or ["any"]),
        "fallbacks": " | ".join(record.fallbacks),
        "instance_type": cost.instance_type,
        "instance_throughput_sps": cost.throughput_sps,
        "replicas": cost.replicas,
        "monthly_usd": cost.monthly_usd,
        "monthly_usd_low": cost.monthly_usd_low,  # the $ interval in whole instances (cost/model.py); None: no range
        "monthly_usd_high": cost.monthly_usd_high,
        "replicas_low": cost.replicas_low,
        "replicas_high": cost.replicas_high,
        "monthly_usd_noise_low": cost.monthly_usd_noise_low,  # the measurement's spread alone (the noise tie's)
        "monthly_usd_noise_high": cost.monthly_usd_noise_high,
        "projected": cost.projected,
        "feasible": cost.feasible,
        "cost_reason": cost.reason,
        "objective_monthly_usd": cost.monthly_usd if cost.feasible else cheapest_any,
        "constraint_quality": drop - context.max_quality_drop,
        "constraint_cost": 0.0 if cost.feasible else 1.0,
        "host": socket.gethostname(),
        "node_id": _node_id(),
    }


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (unit tests call final_row directly)
        return "local"


