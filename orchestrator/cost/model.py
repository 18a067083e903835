"""The cost model: (candidate metrics, traffic, catalog) -> cheapest feasible instance, replicas, $ per month.

Pure functions; nothing here measures or fetches. For every catalog instance the throughput
one instance sustains comes from `orchestrator.cost.projection` (measured or projected,
with the method stated), then:

    replicas    = max(min_replicas, ceil(peak_rps / (throughput_sps x target_utilization)))
    monthly_usd = replicas x on_demand_usd_per_hour x hours_per_month
                  (hourly profile: sum over the 24 hours of that hour's replicas
                   x on_demand_usd_per_hour x hours_per_month / 24)
    feasible    = peak_mem_bytes <= device memory x (1 - memory_headroom)
                  and batch latency p95 at the serving batch <= latency_slo_p95_ms

The $ interval (monthly_usd_low, monthly_usd_high), where the throughput has a range: the throughput's
low and high are the projection's range across CPU architectures (or the point) x the measurement's
spread over its interleaved rounds (or 1); the same sizing at the high throughput gives the low
replicas and $, at the low throughput the high ones, so the interval is in whole instances. The
point figures are unchanged; feasibility is judged at the point.

Arithmetic is exact (fractions of the decimals as written); dollars round half up to the
cent, so every reason string can be checked by hand.
"""

from __future__ import annotations

import math
from datetime import date
from fractions import Fraction

import pandas as pd
from pydantic import BaseModel, Field

from orchestrator.cost.projection import num, project
from orchestrator.cost.candidate import CandidateMetrics
from orchestrator.cost.catalog import GIB_BYTES, Catalog, InstanceType
from orchestrator.cost.traffic import HOURS_PER_DAY, Traffic
from orchestrator.errors import InputError

DEFAULT_MEMORY_HEADROOM = 0.2
DEFAULT_SMT_YIELD = 1.0  # a second hyperthread adds nothing to dense inference until measured otherwise (README)
class InstanceCost(BaseModel):
    """One instance type priced for one candidate; figures are None where none can be given."""

    instance_type: str
    accelerator: str | None
    accelerator_count: int
    on_demand_usd_per_hour: float
    throughput_sps: float | None = Field(
        description="samples/s one instance sustains; requests/s for an LLM priced by tokens (orchestrator.cost.tokens)"
    )
    batch_latency_p95_ms: float | None
    projected: bool
    projection_method: str
    replicas: int | None
    hourly_replicas: list[int] | None = None
    hourly_usd: float | None
    monthly_usd: float | None
    feasible: bool
    reason: str
    # Only for an LLM priced by tokens (orchestrator.cost.tokens); None otherwise.
    concurrency: int | None = Field(None, description="concurrent requests per worker the instance is sized at")
    ttft_p95_ms: float | None = Field(None, description="time to first token p95 on this instance, at concurrency")
    tpot_p95_ms: float | None = Field(None, description="time per output token p95 on this instance, at concurrency")
    output_tokens_per_s: float | None = Field(None, description="output tokens/s one instance sustains, at concurrency")
    usd_per_million_output_tokens: float | None = Field(
        None, description="on_demand_usd_per_hour / (output_tokens_per_s × target_utilization × 3600) × 1e6"
    )
    # The interval (module docstring); None where the throughput has no range (no spread, nothing across archs).
    throughput_sps_low: float | None = None
    throughput_sps_high: float | None = None
    replicas_low: int | None = Field(None, description="replicas at throughput_sps_high")
    replicas_high: int | None = Field(None, description="replicas at throughput_sps_low")
    monthly_usd_low: float | None = Field(None, description="$/month at throughput_sps_high, in whole instances")
    monthly_usd_high: float | None = Field(None, description="$/month at throughput_sps_low, in whole instances")
    interval_method: str | None = Field(None, description="how the interval follows from the spread and the factor range")
    cross_architecture: bool = Field(False, description="projected from another CPU architecture")
    # The measurement's own spread only (no factor range): what two candidates priced alike are compared by, since
    # a factor across architectures moves every candidate of the same precision together.
    monthly_usd_noise_low: float | None = None
    monthly_usd_noise_high: float | None = None


class CostResult(BaseModel):
    """A candidate's cost: the cheapest feasible instance, or infeasible with every instance's reason."""

    feasible: bool
    instance_type: str | None
    accelerator: str | None
    replicas: int | None
    hourly_usd: float | None
    monthly_usd: float | None
    projected: bool
    reason: str
    per_instance: list[InstanceCost]
    throughput_sps: float | None = Field(None, description="what one instance of instance_type sustains (measured or projected)")
    region: str
    catalog_as_of: date
    # Only for an LLM priced by tokens (orchestrator.cost.tokens); None otherwise.
    concurrency: int | None = Field(None, description="concurrent requests per worker on instance_type")
    usd_per_million_output_tokens: float | None = Field(None, description="on instance_type, at target_utilization")
    # instance_type's interval (InstanceCost); None where it has none.
    throughput_sps_low: float | None = None
    throughput_sps_high: float | None = None
    replicas_low: int | None = None
    replicas_high: int | None = None
    monthly_usd_low: float | None = None
    monthly_usd_high: float | None = None
    monthly_usd_noise_low: float | None = None
    monthly_usd_noise_high: float | None = None
    cross_architecture: bool = False


INTERVAL_FIELDS = (
    "throughput_sps_low", "throughput_sps_high", "replicas_low", "replicas_high", "monthly_usd_low", "monthly_usd_high",
    "monthly_usd_noise_low", "monthly_usd_noise_high",
)  # fmt: skip


def throughput_range(
    point_sps: float, projected_low: float | None, projected_high: float | None, spread: tuple[float, float] | None
) -> tuple[float, float, str] | None:
    """(low, high, how) of one instance's throughput: the projection's range (or the point) × the rounds' spread (or 1).

    None where neither gives a range: then there is no interval, only the point.
    """
    if spread is None and (projected_low is None or projected_high is None):
        return None
    low, high = (projected_low, projected_high) if projected_low is not None and projected_high is not None else (point_sps, point_sps)
    parts = []
    if projected_low is not None and projected_high is not None:
        parts.append(f"cross-architecture range [{num(round(projected_low, 3))}, {num(round(projected_high, 3))}] sps")
    else:
        parts.append(f"{num(round(point_sps, 3))} sps")
    if spread is not None:
        low, high = low * spread[0], high * spread[1]
        parts.append(f"measurement spread [{num(round(spread[0], 4))}, {num(round(spread[1], 4))}] (min, max of the interleaved rounds / their median)")
    return low, high, " × ".join(parts) + f" = [{num(round(low, 3))}, {num(round(high, 3))}] sps"


def _interval(traffic: Traffic, spans: tuple[float, float, str] | None, price: float) -> dict:
    """The interval fields of one instance: replicas and $ at the high and the low throughput (whole instances)."""
    if spans is None:
        return {}
    low_sps, high_sps, how = spans
    replicas_low, _, usd_low, _ = _sizing(traffic, high_sps, price)
    replicas_high, _, usd_high, _ = _sizing(traffic, low_sps, price)
    return dict(
        throughput_sps_low=low_sps, throughput_sps_high=high_sps, replicas_low=replicas_low, replicas_high=replicas_high,
        monthly_usd_low=usd_low, monthly_usd_high=usd_high,
        interval_method=f"{how} → replicas [{replicas_low}, {replicas_high}], {_usd(usd_low)} to {_usd(usd_high)}/month",
    )  # fmt: skip


def _exact(x: float) -> Fraction:
    """A float as the decimal it prints as (0.6 -> 3/5), so 1000/(2500*0.4) is exactly 1."""
    return Fraction(repr(float(x)))


def _cents(amount: Fraction) -> float:
    """Dollars rounded half up to the cent."""
    return math.floor(amount * 100 + Fraction(1, 2)) / 100


def replicas_needed(rps: float, throughput_sps: float, target_utilization: float, min_replicas: int) -> int:
    """max(min_replicas, ceil(rps / (throughput_sps x target_utilization))), computed exactly."""
    if not math.isfinite(throughput_sps) or throughput_sps <= 0:
        raise ValueError(f"throughput_sps must be a positive number, got {throughput_sps!r}")
    if not 0 < target_utilization <= 1:
        raise ValueError(f"target_utilization must be in (0, 1], got {target_utilization!r}")
    if not math.isfinite(rps) or rps < 0:
        raise ValueError(f"rps must be a non-negative number, got {rps!r}")
    needed = math.ceil(_exact(rps) / (_exact(throughput_sps) * _exact(target_utilization)))
    return max(min_replicas, needed)


def _usd(amount: float) -> str:
    return f"${amount:,.2f}"


def _sizing(traffic: Traffic, throughput_sps: float, price: float) -> tuple[int, list[int] | None, float, str]:
    """(peak replicas, hourly replicas or None, monthly_usd, the arithmetic as a sentence)."""
    util, floor = traffic.target_utilization, traffic.min_replicas
    price_h = f"${num(price)}/h"
    profile = traffic.hourly_rps_profile
    if profile is None:
        rps = traffic.sizing_rps
        replicas = replicas_needed(rps, throughput_sps, util, floor)
        monthly = _cents(replicas * _exact(price) * _exact(traffic.hours_per_month))
        sized = f"ceil({num(rps)} rps / ({num(throughput_sps)} sps × {num(util)}))"
        if replicas == floor and replicas_needed(rps, throughput_sps, util, 0) < floor:
            sized = f"max(min_replicas {floor}, {sized} = {replicas_needed(rps, throughput_sps, util, 0)})"
        text = f"{sized} = {replicas} replicas × {price_h} × {num(traffic.hours_per_month)} h = {_usd(monthly)}/month"
        return replicas, None, monthly, text
    hourly = [replicas_needed(rps, throughput_sps, util, floor) for rps in profile]
    replica_hours = sum(hourly)
    monthly = _cents(replica_hours * _exact(price) * _exact(traffic.hours_per_month) / HOURS_PER_DAY)
    text = (
        f"hourly replicas max(min_replicas {floor}, ceil(rps_h / ({num(throughput_sps)} sps × {num(util)}))) "
        f"= {hourly}, sum {replica_hours} replica-hours/day × {price_h} × "
        f"{num(traffic.hours_per_month)} h / 24 = {_usd(monthly)}/month"
    )
    return max(hourly), hourly, monthly, text


def _price_instance(
    metrics: CandidateMetrics, traffic: Traffic, catalog: Catalog, inst: InstanceType, headroom: float, smt_yield: float
) -> InstanceCost:
    """Throughput, replicas, monthly $ and feasibility of one instance type."""
    proj = project(metrics, inst, catalog.accelerators, traffic.serving_batch_size, smt_yield, catalog.arch_factors)
    common = dict(
        instance_type=inst.instance_type,
        accelerator=inst.accelerator,
        accelerator_count=inst.accelerator_count,
        on_demand_usd_per_hour=inst.on_demand_usd_per_hour,
        projected=proj.projected,
        projection_method=proj.method,
        cross_architecture=proj.cross_architecture,
    )
    if proj.blocker is not None or proj.throughput_sps is None or proj.batch_latency_p95_ms is None:
        return InstanceCost(
            **common,
            throughput_sps=None,
            batch_latency_p95_ms=None,
            replicas=None,
            hourly_usd=None,
            monthly_usd=None,
            feasible=False,
            reason=proj.blocker or proj.method,
        )
    replicas, hourly, monthly_usd, arithmetic = _sizing(traffic, proj.throughput_sps, inst.on_demand_usd_per_hour)
    spans = throughput_range(proj.throughput_sps, proj.throughput_sps_low, proj.throughput_sps_high, metrics.throughput_spread)
    interval = _interval(traffic, spans, inst.on_demand_usd_per_hour)
    noise = _interval(traffic, throughput_range(proj.throughput_sps, None, None, metrics.throughput_spread), inst.on_demand_usd_per_hour)
    if noise:
        interval.update(monthly_usd_noise_low=noise["monthly_usd_low"], monthly_usd_noise_high=noise["monthly_usd_high"])
    problems: list[str] = []
    if inst.accelerator is not None:
        capacity_gib, where = (
            inst.accelerator_memory_gib,
            f"per {inst.accelerator} (models are not sharded across GPUs)",
        )
    else:
        capacity_gib, where = inst.memory_gib, "of instance memory"
    limit_bytes = capacity_gib * GIB_BYTES * (1 - headroom)
    if metrics.peak_mem_bytes > limit_bytes:
        problems.append(
            f"memory: peak {metrics.peak_mem_bytes / GIB_BYTES:.2f} GiB > {num(capacity_gib)} GiB × "
            f"(1 − {num(headroom)}) = {limit_bytes / GIB_BYTES:.2f} GiB {where}"
        )
    if proj.batch_latency_p95_ms > traffic.latency_slo_p95_ms:
        problems.append(
            f"latency: p95 at batch {traffic.serving_batch_size} is {num(round(proj.batch_latency_p95_ms, 3))} ms "
            f"> SLO {num(traffic.latency_slo_p95_ms)} ms"
        )
    return InstanceCost(
        **common,
        throughput_sps=proj.throughput_sps,
        batch_latency_p95_ms=proj.batch_latency_p95_ms,
        replicas=replicas,
        hourly_replicas=hourly,
        hourly_usd=float(replicas * _exact(inst.on_demand_usd_per_hour)),
        monthly_usd=monthly_usd,
        feasible=not problems,
        reason="; ".join(problems) if problems else arithmetic,
        **interval,
    )


def _rank(cost: InstanceCost) -> tuple[bool, float, int, str]:
    """Cheapest feasible first; ties go to fewer replicas, then the name."""
    monthly = cost.monthly_usd if cost.monthly_usd is not None else math.inf
    return (not cost.feasible, monthly, cost.replicas or 0, cost.instance_type)


def price_candidate(
    metrics: CandidateMetrics,
    traffic: Traffic,
    catalog: Catalog,
    memory_headroom: float = DEFAULT_MEMORY_HEADROOM,
    smt_yield: float = DEFAULT_SMT_YIELD,
) -> CostResult:
    """Price a candidate on every catalog instance, pick the cheapest feasible; never raises for infeasibility.

    smt_yield: a CPU core's throughput with all its hyperthreads busy, relative to one thread (1 to 2).
    """
    if not 0 <= memory_headroom < 1:
        raise InputError(f"memory_headroom: expected a fraction in [0, 1), got {memory_headroom!r}")
    if not 1 <= smt_yield <= 2:
        raise InputError(f"deployment.smt_yield: expected a number from 1.0 to 2.0, got {smt_yield!r}")
    if traffic.latency_slo_p95_ms is None:
        raise InputError(
            "traffic.latency_slo_p95_ms: expected the p95 latency SLO of one batch (ms) to price this candidate; "
            "only an LLM priced by tokens (orchestrator.cost.tokens.price_tokens) may leave it out"
        )
    costs = [_price_instance(metrics, traffic, catalog, inst, memory_headroom, smt_yield) for inst in catalog.instances]
    return choose(costs, catalog.region, catalog.as_of)


def with_measured(result: CostResult, measured: list[InstanceCost]) -> CostResult:
    """The same candidate priced again where some instance types were measured on the type itself.

    Each measured entry replaces the projected one of its instance type; the cheapest
    feasible instance is then picked again from all of them.
    """
    replaced = {cost.instance_type: cost for cost in measured}
    costs = [replaced.pop(c.instance_type, c) for c in result.per_instance] + list(replaced.values())
    return choose(costs, result.region, result.catalog_as_of)


def choose(costs: list[InstanceCost], region: str, catalog_as_of: date) -> CostResult:
    """The cheapest feasible of a candidate's per-instance costs, with every reason kept."""
    costs = sorted(costs, key=_rank)
    feasible = [c for c in costs if c.feasible]
    base = dict(per_instance=costs, region=region, catalog_as_of=catalog_as_of)
    if not feasible:
        details = " | ".join(f"{c.instance_type}: {c.reason}" for c in costs) or "the catalog is empty"
        return CostResult(
            feasible=False,
            instance_type=None,
            accelerator=None,
            replicas=None,
            hourly_usd=None,
            monthly_usd=None,
            projected=False,
            reason=f"infeasible on all {len(costs)} instance types: {details}",
            **base,
        )
    best = feasible[0]
    reason = (
        f"{best.instance_type}: {best.reason}; cheapest of {len(feasible)} feasible instance types (of {len(costs)})"
    )
    if len(feasible) > 1:
        reason += f", next {feasible[1].instance_type} at {_usd(feasible[1].monthly_usd or 0)}/month"
    reason += f"; throughput {best.projection_method}"
    if best.interval_method:
        reason += f"; interval: {best.interval_method}"
    return CostResult(
        feasible=True,
        instance_type=best.instance_type,
        accelerator=best.accelerator,
        replicas=best.replicas,
        hourly_usd=best.hourly_usd,
        monthly_usd=best.monthly_usd,
        projected=best.projected,
        reason=reason,
        throughput_sps=best.throughput_sps,
        concurrency=best.concurrency,
        usd_per_million_output_tokens=best.usd_per_million_output_tokens,
        cross_architecture=best.cross_architecture,
        **{name: getattr(best, name) for name in INTERVAL_FIELDS},
        **base,
    )


EXPLAIN_COLUMNS = [
    "instance_type",
    "accelerator",
    "accelerator_count",
    "on_demand_usd_per_hour",
    "throughput_sps",
    "batch_latency_p95_ms",
    "projected",
    "projection_method",
    "replicas",
    "hourly_usd",
    "monthly_usd",
    "monthly_usd_low",
    "monthly_usd_high",
    "feasible",
    "chosen",
    "reason",
]

# An LLM priced by tokens: throughput_sps is requests/s, and the token figures follow it.
TOKEN_EXPLAIN_COLUMNS = [
    *EXPLAIN_COLUMNS[: EXPLAIN_COLUMNS.index("batch_latency_p95_ms")],
    "concurrency",
    "ttft_p95_ms",
    "tpot_p95_ms",
    "output_tokens_per_s",
    "usd_per_million_output_tokens",
    *EXPLAIN_COLUMNS[EXPLAIN_COLUMNS.index("projected") :],
]


def explain(result: CostResult, tokens: bool | None = None) -> pd.DataFrame:
    """One row per catalog instance: throughput (measured or projected), replicas, $/month, feasible, reason.

    tokens: TOKEN_EXPLAIN_COLUMNS instead of EXPLAIN_COLUMNS (None: where any instance has a concurrency).
    """
    if tokens is None:
        tokens = any(c.concurrency is not None for c in result.per_instance)
    rows = [
        {**c.model_dump(exclude={"hourly_replicas"}), "chosen": c.instance_type == result.instance_type}
        for c in result.per_instance
    ]
    frame = pd.DataFrame(rows, columns=TOKEN_EXPLAIN_COLUMNS if tokens else EXPLAIN_COLUMNS)
    for column in ("replicas", "replicas_low", "replicas_high"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")  # blank, not NaN-as-float, where unpriced
    if tokens:
        frame["concurrency"] = frame["concurrency"].astype("Int64")
    return frame
