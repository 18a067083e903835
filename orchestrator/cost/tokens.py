"""The cost model for an LLM: (generation figures per concurrency, token traffic, catalog) -> cheapest feasible instance.

Pure functions, like `orchestrator.cost.model`; every figure is stated in the instance's reason.
A worker is what was measured: one GPU, or a process with cpu_threads threads serving
`concurrency` requests at once. Per instance type:

    projection   = orchestrator.cost.projection's rules, applied to each measured point as if
                   its output tokens/s were samples/s and its tpot p95 a batch latency: no
                   figure across device classes, for an unlisted GPU or a foreign CPU arch
    workers      = CPU: the projection's core capacity / cpu_threads (physical cores x SMT yield,
                   or vCPUs where measured on this type with hyperthreads busy), fractional allowed;
                   GPU: accelerator_count (one model copy per GPU)
    latencies    = ttft and tpot p95 as measured (a worker is as fast as measured; CPUs of another
                   arch too, as projection keeps batch latency); on another GPU / the bound ratio
    memory       = per worker max(measured peak, weight_bytes + kv_bytes_per_token x
                   (prompt p95 + output p95) x concurrency); CPU: x ceil(workers) processes
                   <= instance memory x (1 - headroom); GPU: <= one GPU's memory x (1 - headroom)
    concurrency  = of the measured points that meet the ttft and tpot SLOs (and latency_slo_p95_ms,
                   if given, on ttft + (output p95 - 1) x tpot) and fit memory, the one with the most
                   output tokens/s (ties: the lower concurrency)
    tokens/s     = output tokens/s per worker x workers            (per instance; x the cross-architecture
                   factor of cpu_arch_factors.csv on a CPU of another arch, as projection's rule 3)
    rate         = tokens/s / output_tokens                         (requests/s per instance)
    replicas     = max(min_replicas, ceil(peak_rps x output_tokens / (tokens/s x target_utilization)))
                   (hourly profile: per hour, as in orchestrator.cost.model)
    monthly_usd  = replicas x on_demand_usd_per_hour x hours_per_month          (to the cent)
    $/M output   = on_demand_usd_per_hour / (tokens/s x target_utilization x 3600) x 1e6
                   (the cost of a token at the sized utilization, to a hundredth of a cent)

    interval     = tokens/s x the projection's range across CPU architectures (relative to its point) x the
                   chosen point's measurement spread (TokenPoint.throughput_spread), each where there is one;
                   replicas and $ at the high and the low end, in whole instances (orchestrator.cost.model)

Arithmetic is exact (fractions of the decimals as written) and rounds half up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from orchestrator.cost.candidate import CandidateMetrics, MeasuredOn, TokenCandidateMetrics, TokenPoint
from orchestrator.cost.catalog import GIB_BYTES, Catalog, InstanceType
from orchestrator.cost.model import (
    DEFAULT_MEMORY_HEADROOM,
    DEFAULT_SMT_YIELD,
    CostResult,
    InstanceCost,
    _cents,
    _exact,
    _usd,
    choose,
)
from orchestrator.cost.projection import Projection, cores_capacity, num, project
from orchestrator.cost.traffic import HOURS_PER_DAY, TokenTraffic, Traffic
from orchestrator.errors import InputError

SECONDS_PER_HOUR = 3600
TOKENS_PER_MILLION = 1_000_000
MIB_BYTES = 2**20


@dataclass(frozen=True)
class _PointFit:
    """One measured concurrency on one instance: its figures there and what rules it out."""

    point: TokenPoint
    projection: Projection
    worker_tokens_per_s: Fraction
    instance_tokens_per_s: Fraction
    ttft_ms: Fraction
    tpot_ms: Fraction
    memory_text: str
    problems: list[str]
    passed: list[str]


def _usd_fine(amount: Fraction) -> float:
    """Dollars rounded half up to a hundredth of a cent (a token costs far less than a cent)."""
    return math.floor(amount * 10_000 + Fraction(1, 2)) / 10_000


def _bytes(amount: Fraction | int) -> str:
    """Bytes as GiB (two decimals) from 1 GiB up, MiB (one decimal) below."""
    if amount >= GIB_BYTES:
        return f"{float(amount) / GIB_BYTES:.2f} GiB"
    return f"{float(amount) / MIB_BYTES:.1f} MiB"


def _ms(value: Fraction) -> str:
    return f"{num(round(float(value), 3))} ms"


def _frac(value: Fraction) -> str:
    return num(float(value))


def _as_candidate(metrics: TokenCandidateMetrics, point: TokenPoint) -> CandidateMetrics:
    """One point as the request model sees a measurement: output tokens/s as samples/s, tpot p95 as batch latency."""
    return CandidateMetrics(
        throughput_sps=point.output_tokens_per_s,
        batch_latency_p95_ms=point.tpot_p95_ms,
        peak_mem_bytes=point.peak_mem_bytes,
        size_bytes=metrics.weight_bytes,
        **metrics.model_dump(include=set(MeasuredOn.model_fields)),
    )


def _in_tokens(method: str) -> str:
    """A projection's sentence in the units it was given here (tokens/s, tpot)."""
    return method.replace(" sps", " output tok/s").replace("batch latency", "tpot p95")


def _workers(metrics: TokenCandidateMetrics, inst: InstanceType, smt_yield: float) -> tuple[Fraction, str]:
    """How many measured workers one instance holds, by projection's rules, and the sentence that shows it."""
    if inst.accelerator is not None:
        count = inst.accelerator_count
        return Fraction(count), f"{count} worker{'s' if count != 1 else ''} (one per GPU)"
    threads = metrics.cpu_threads or 1
    if metrics.measured_instance_type == inst.instance_type and threads > inst.physical_cores:
        workers = Fraction(inst.vcpus, threads)
        how = f"{inst.vcpus} vCPUs / {threads} threads measured (hyperthreads busy when measured)"
    else:
        capacity = _exact(cores_capacity(inst, smt_yield))
        workers = capacity / threads
        how = f"{_frac(capacity)} core capacity / {threads} thread{'s' if threads != 1 else ''} measured"
    return workers, f"{_frac(workers)} worker{'' if workers == 1 else 's'} ({how}), each as fast as measured"


def _fit_point(
    metrics: TokenCandidateMetrics,
    tokens: TokenTraffic,
    traffic: Traffic,
    inst: InstanceType,
    point: TokenPoint,
    proj: Projection,
    workers: Fraction,
    headroom: float,
) -> _PointFit:
    """The figures of one measured concurrency on one instance, and the SLO or memory bound it breaks."""
    assert proj.throughput_sps is not None and proj.batch_latency_p95_ms is not None  # no blocker: checked by caller
    tpot_ms = _exact(proj.batch_latency_p95_ms)
    speed = _exact(point.tpot_p95_ms) / tpot_ms  # 1 on CPUs and the measured GPU; the bound ratio on another GPU
    ttft_ms = _exact(point.ttft_p95_ms) / speed
    if inst.accelerator is None:
        worker_tokens_per_s = _exact(point.output_tokens_per_s) * _exact(proj.speed_factor)
    else:
        worker_tokens_per_s = _exact(proj.throughput_sps) / workers
    problems: list[str] = []
    passed: list[str] = []

    def check(label: str, value: Fraction, slo: float | None) -> None:
        if slo is None:
            return
        if value > _exact(slo):
            problems.append(f"{label} {_ms(value)} > SLO {num(slo)} ms")
        else:
            passed.append(f"{label} {_ms(value)} ≤ SLO {num(slo)} ms")

    check("ttft p95", ttft_ms, tokens.ttft_slo_p95_ms)
    check("tpot p95", tpot_ms, tokens.tpot_slo_p95_ms)
    if traffic.latency_slo_p95_ms is not None:
        answer = _exact(tokens.output_tokens_bound)
        request_ms = ttft_ms + max(answer - 1, Fraction(0)) * tpot_ms
        check(f"request p95 ≈ ttft + ({num(tokens.output_tokens_bound)} − 1) × tpot =", request_ms, traffic.latency_slo_p95_ms)

    context = _exact(tokens.prompt_tokens_bound) + _exact(tokens.output_tokens_bound)
    kv_bytes = metrics.kv_bytes_per_token * context * point.concurrency
    bound = metrics.weight_bytes + kv_bytes
    per_worker = max(Fraction(point.peak_mem_bytes), bound)
    formula = (
        f"max(measured peak {_bytes(point.peak_mem_bytes)}, weights {_bytes(metrics.weight_bytes)} + KV "
        f"{metrics.kv_bytes_per_token} B/token × {_frac(context)} tokens × {point.concurrency} = {_bytes(bound)})"
    )
    if inst.accelerator is not None:
        capacity_gib, where = inst.accelerator_memory_gib, f"per {inst.accelerator}"
        total = per_worker
        shown = f"{formula} = {_bytes(total)}"
    else:
        capacity_gib, where = inst.memory_gib, "of instance memory"
        copies = math.ceil(workers)
        total = per_worker * copies
        shown = f"{formula} × {copies} worker process{'es' if copies != 1 else ''} = {_bytes(total)}"
    limit = _exact(capacity_gib) * GIB_BYTES * (1 - _exact(headroom))
    limit_text = f"{num(capacity_gib)} GiB × (1 − {num(headroom)}) = {_bytes(limit)} {where}"
    fits = total <= limit
    memory_text = f"memory {shown} {'≤' if fits else '>'} {limit_text}"
    if not fits:
        problems.append(memory_text)
    return _PointFit(
        point=point,
        projection=proj,
        worker_tokens_per_s=worker_tokens_per_s,
        instance_tokens_per_s=worker_tokens_per_s * workers,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        memory_text=memory_text,
        problems=problems,
        passed=passed,
    )


def _replicas(rps: float, output_tokens: float, tokens_per_s: Fraction, utilization: float, floor: int) -> int:
    """max(floor, ceil(rps x output_tokens / (tokens_per_s x utilization))), exactly."""
    return max(floor, math.ceil(_exact(rps) * _exact(output_tokens) / (tokens_per_s * _exact(utilization))))


def _sizing(
    traffic: Traffic, tokens: TokenTraffic, tokens_per_s: Fraction, price: float
) -> tuple[int, list[int] | None, float, str]:
    """(peak replicas, hourly replicas or None, monthly_usd, the arithmetic as a sentence), sized in output tokens."""
    util, floor, answer = traffic.target_utilization, traffic.min_replicas, tokens.output_tokens
    price_h = f"${num(price)}/h"
    per = f"{num(answer)} output tokens / ({_frac(tokens_per_s)} tok/s × {num(util)})"
    profile = traffic.hourly_rps_profile
    if profile is None:
        rps = traffic.sizing_rps
        replicas = _replicas(rps, answer, tokens_per_s, util, floor)
        monthly = _cents(replicas * _exact(price) * _exact(traffic.hours_per_month))
        sized = f"ceil({num(rps)} rps × {per})"
        unfloored = _replicas(rps, answer, tokens_per_s, util, 0)
        if unfloored < floor:
            sized = f"max(min_replicas {floor}, {sized} = {unfloored})"
        text = f"{sized} = {replicas} replicas × {price_h} × {num(traffic.hours_per_month)} h = {_usd(monthly)}/month"
        return replicas, None, monthly, text
    hourly = [_replicas(rps, answer, tokens_per_s, util, floor) for rps in profile]
    replica_hours = sum(hourly)
    monthly = _cents(replica_hours * _exact(price) * _exact(traffic.hours_per_month) / HOURS_PER_DAY)
    text = (
        f"hourly replicas max(min_replicas {floor}, ceil(rps_h × {per})) = {hourly}, sum {replica_hours} "
        f"replica-hours/day × {price_h} × {num(traffic.hours_per_month)} h / 24 = {_usd(monthly)}/month"
    )
    return max(hourly), hourly, monthly, text


def _price_instance(
    metrics: TokenCandidateMetrics, traffic: Traffic, catalog: Catalog, inst: InstanceType, headroom: float, smt_yield: float
) -> InstanceCost:
    """The best measured concurrency, replicas, monthly $ and $ per million output tokens on one instance type."""
    assert traffic.tokens is not None  # checked by price_tokens
    tokens = traffic.tokens
    projections = [
        project(_as_candidate(metrics, p), inst, catalog.accelerators, p.concurrency, smt_yield, catalog.arch_factors)
        for p in metrics.points
    ]
    common = dict(
        instance_type=inst.instance_type,
        accelerator=inst.accelerator,
        accelerator_count=inst.accelerator_count,
        on_demand_usd_per_hour=inst.on_demand_usd_per_hour,
        projected=projections[0].projected,
        batch_latency_p95_ms=None,
        cross_architecture=projections[0].cross_architecture,
    )
    unpriced = dict(throughput_sps=None, replicas=None, hourly_usd=None, monthly_usd=None, feasible=False)
    blocked = next((p for p in projections if p.blocker is not None or p.throughput_sps is None), None)
    if blocked is not None:
        return InstanceCost(**common, **unpriced, projection_method=blocked.method, reason=blocked.blocker or blocked.method)
    workers, workers_text = _workers(metrics, inst, smt_yield)
    fits = [
        _fit_point(metrics, tokens, traffic, inst, p, proj, workers, headroom)
        for p, proj in zip(metrics.points, projections)
    ]
    measured = ", ".join(str(p.concurrency) for p in metrics.points)
    ok = [f for f in fits if not f.problems]
    if not ok:
        why = "; ".join(f"concurrency {f.point.concurrency}: {', '.join(f.problems)}" for f in fits)
        return InstanceCost(
            **common,
            **unpriced,
            projection_method=_in_tokens(fits[-1].projection.method),
            reason=f"no measured concurrency ({measured}) meets the SLOs and fits memory: {why}",
        )
    best = max(ok, key=lambda f: (f.instance_tokens_per_s, -f.point.concurrency))
    tokens_per_s = best.instance_tokens_per_s
    rate_rps = tokens_per_s / _exact(tokens.output_tokens)
    replicas, hourly, monthly_usd, sizing = _sizing(traffic, tokens, tokens_per_s, inst.on_demand_usd_per_hour)
    per_token_hour = tokens_per_s * _exact(traffic.target_utilization) * SECONDS_PER_HOUR
    usd_per_million = _usd_fine(_exact(inst.on_demand_usd_per_hour) / per_token_hour * TOKENS_PER_MILLION)
    others = [f for f in fits if f is not best]
    choice = "the most output tok/s within the SLOs and memory"
    if others:
        choice += "; " + "; ".join(
            f"{f.point.concurrency}: {', '.join(f.problems) or f'{_frac(f.instance_tokens_per_s)} output tok/s'}"
            for f in others
        )
    slos = ", ".join(best.passed) if best.passed else "no latency SLO given"
    reason = (
        f"concurrency {best.point.concurrency} of measured {measured} ({choice}): {slos}; {best.memory_text}; "
        f"{workers_text}: {_frac(best.worker_tokens_per_s)} output tok/s per worker × {_frac(workers)} = "
        f"{_frac(tokens_per_s)} output tok/s per instance / {num(tokens.output_tokens)} output tokens = "
        f"{_frac(rate_rps)} rps; {sizing}; ${num(inst.on_demand_usd_per_hour)}/h / ({_frac(tokens_per_s)} tok/s × "
        f"{num(traffic.target_utilization)} × {SECONDS_PER_HOUR} s) × 1e6 = ${usd_per_million:.4f} per million "
        "output tokens"
    )
    interval = _token_interval(traffic, tokens, best, tokens_per_s, inst.on_demand_usd_per_hour)
    return InstanceCost(
        **{**common, "projected": best.projection.projected},
        projection_method=_in_tokens(best.projection.method),
        throughput_sps=float(rate_rps),
        replicas=replicas,
        hourly_replicas=hourly,
        hourly_usd=float(replicas * _exact(inst.on_demand_usd_per_hour)),
        monthly_usd=monthly_usd,
        feasible=True,
        reason=reason,
        concurrency=best.point.concurrency,
        ttft_p95_ms=float(best.ttft_ms),
        tpot_p95_ms=float(best.tpot_ms),
        output_tokens_per_s=float(tokens_per_s),
        usd_per_million_output_tokens=usd_per_million,
        **interval,
    )


def _token_interval(traffic: Traffic, tokens: TokenTraffic, best: _PointFit, tokens_per_s: Fraction, price: float) -> dict:
    """The interval fields (requests/s, replicas, $) at the low and high output tokens/s of the chosen point."""
    proj = best.projection
    assert proj.throughput_sps is not None
    relative = None
    if proj.throughput_sps_low is not None and proj.throughput_sps_high is not None:
        relative = (proj.throughput_sps_low / proj.throughput_sps, proj.throughput_sps_high / proj.throughput_sps)
    spread = best.point.throughput_spread
    if relative is None and spread is None:
        return {}
    low = tokens_per_s * _exact((relative or (1.0, 1.0))[0]) * _exact((spread or (1.0, 1.0))[0])
    high = tokens_per_s * _exact((relative or (1.0, 1.0))[1]) * _exact((spread or (1.0, 1.0))[1])
    replicas_low, _, usd_low, _ = _sizing(traffic, tokens, high, price)
    replicas_high, _, usd_high, _ = _sizing(traffic, tokens, low, price)
    parts = [f"{_frac(tokens_per_s)} output tok/s"]
    if relative is not None:
        parts.append(f"cross-architecture range [{num(round(relative[0], 4))}, {num(round(relative[1], 4))}]")
    if spread is not None:
        parts.append(f"measurement spread [{num(round(spread[0], 4))}, {num(round(spread[1], 4))}]")
    answer = _exact(tokens.output_tokens)
    return dict(
        throughput_sps_low=float(low / answer), throughput_sps_high=float(high / answer),
        replicas_low=replicas_low, replicas_high=replicas_high, monthly_usd_low=usd_low, monthly_usd_high=usd_high,
        interval_method=(
            f"{' × '.join(parts)} = [{_frac(low)}, {_frac(high)}] output tok/s → replicas [{replicas_low}, "
            f"{replicas_high}], {_usd(usd_low)} to {_usd(usd_high)}/month"
        ),
    )  # fmt: skip


def price_tokens(
    metrics: TokenCandidateMetrics,
    traffic: Traffic,
    catalog: Catalog,
    memory_headroom: float = DEFAULT_MEMORY_HEADROOM,
    smt_yield: float = DEFAULT_SMT_YIELD,
) -> CostResult:
    """Price an LLM candidate on every catalog instance by its token figures; pick the cheapest feasible.

    Never raises for infeasibility (every instance's reason is kept); raises InputError for bad arguments.
    """
    if traffic.tokens is None:
        raise InputError("traffic.tokens: expected prompt_tokens and output_tokens to price an LLM by its tokens")
    if not 0 <= memory_headroom < 1:
        raise InputError(f"memory_headroom: expected a fraction in [0, 1), got {memory_headroom!r}")
    if not 1 <= smt_yield <= 2:
        raise InputError(f"deployment.smt_yield: expected a number from 1.0 to 2.0, got {smt_yield!r}")
    costs = [_price_instance(metrics, traffic, catalog, inst, memory_headroom, smt_yield) for inst in catalog.instances]
    return choose(costs, catalog.region, catalog.as_of)
