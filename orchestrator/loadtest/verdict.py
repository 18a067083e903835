"""From Locust's raw records to a step's figures and verdict, the ramp's next rate, and the load test's verdict.

A step held when the p95 latency of its ok answers is within the SLO, its errors (any answer but a 200 with outputs,
timeouts, refused, dropped or unanswered requests) are at most `max_error_rate` of its arrivals, and the generator
kept its schedule (sent at least GENERATOR_KEPT_UP of the scheduled rate); a generator that could not is no verdict
on the server ("generator_limited").

The ramp multiplies the base rate by 0.5, 1, 1.5, 2 and stops at the first step that does not hold; where 0.5 already
broke it halves the rate until a step holds (down to MIN_FACTOR), so the sustained rate is measured, not only bounded.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from orchestrator.report.loadtest import StepResult

MAX_ERROR_RATE = 0.01  # a step with more than 1% errors did not hold, whatever its latency
GENERATOR_KEPT_UP = 0.9  # offered / scheduled rate below this: the generator, not the server, set the pace
RAMP_UP = (0.5, 1.0, 1.5, 2.0)
MIN_FACTOR = 1 / 256  # the ramp halves down to this share of the base rate, no further


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (the smallest value with at least q% of the values at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def summarise(
    records: Sequence[Sequence[Any]],
    arrivals: int,
    *,
    target_rps: float,
    factor: float | None,
    duration_s: float,
    examples_per_request: int,
    slo_p95_ms: float,
    max_error_rate: float = MAX_ERROR_RATE,
) -> StepResult:
    """One step's figures and verdict from the locustfile's records ([due_s, sent_s, response_time_ms, ok, kind(, answered_s)])."""
    sent = [r for r in records if r[4] != "dropped"]
    ok = [r for r in records if r[3]]
    kinds = Counter(str(r[4]) for r in records if not r[3])
    kinds.update({"unscheduled": max(0, arrivals - len(records))})  # never sent at all (the generator was stopped)
    kinds = Counter({k: v for k, v in kinds.items() if v})
    errors = sum(kinds.values())
    latencies = [float(r[2]) for r in ok if r[2] is not None]
    lags_ms = [max(0.0, (r[1] - r[0]) * 1000) for r in records]
    offered = len(records) / max([duration_s, *(r[1] for r in records)])  # dropped ones too: the server's backlog dropped them
    answered_s = [r[5] for r in ok if len(r) > 5]
    busy_s = max([duration_s, *answered_s])
    achieved = len(ok) / busy_s
    error_rate = errors / arrivals if arrivals else 0.0
    p95 = percentile(latencies, 95)
    scheduled = arrivals / duration_s
    if arrivals and offered < GENERATOR_KEPT_UP * scheduled:
        verdict, reason = "generator_limited", (
            f"the load generator sent {offered:.1f} requests/s of the {scheduled:.1f} its schedule drew "
            f"(lag p95 {percentile(lags_ms, 95) or 0:.0f} ms): it, not the server, set the pace on this machine"
        )
    elif not ok or p95 is None:
        verdict, reason = "broke", f"no ok answer out of {arrivals} arrivals ({_kinds_text(kinds)})"
    elif p95 > slo_p95_ms or error_rate > max_error_rate:
        problems = []
        if p95 > slo_p95_ms:
            problems.append(f"p95 {p95:.1f} ms > SLO {slo_p95_ms:g} ms")
        if error_rate > max_error_rate:
            problems.append(f"errors {error_rate:.1%} > {max_error_rate:.0%} ({_kinds_text(kinds)})")
        verdict, reason = "broke", "; ".join(problems)
    else:
        verdict, reason = "held", (
            f"p95 {p95:.1f} ms <= SLO {slo_p95_ms:g} ms, errors {error_rate:.1%} <= {max_error_rate:.0%}"
        )
    return StepResult(
        factor=factor, target_rps=target_rps, duration_s=duration_s, arrivals=arrivals, sent=len(sent), ok=len(ok),
        errors=errors, error_kinds=dict(kinds), error_rate=min(1.0, error_rate), offered_rps=offered,
        achieved_rps=achieved, achieved_sps=achieved * examples_per_request, latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=p95, latency_p99_ms=percentile(latencies, 99), generator_lag_p95_ms=percentile(lags_ms, 95) or 0.0,
        verdict=verdict, reason=reason,
    )  # fmt: skip


def _kinds_text(kinds: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) or "no errors"


def next_factor(done: Sequence[tuple[float, bool]], ramp: bool = True, min_factor: float = MIN_FACTOR) -> float | None:
    """The next multiple of the base rate to try, given (factor, held) of the steps so far; None: the test is over.

    Without the ramp: 1 (the base rate) once. With it: up through RAMP_UP while every step holds, stopping at the first
    that does not; where the first (0.5) broke, halving until one holds or the factor would go below min_factor.
    """
    if not ramp:
        return None if done else 1.0
    if not done:
        return RAMP_UP[0]
    factor, held = done[-1]
    any_held = any(h for _, h in done)
    any_broke = any(not h for _, h in done)
    if held:
        if any_broke:
            return None  # coming down: the first rate that holds is the sustained one
        higher = [f for f in RAMP_UP if f > factor]
        return higher[0] if higher else None
    if any_held:
        return None  # going up: this is the first rate that broke
    lower = factor / 2
    return lower if lower >= min_factor else None


def conclude(steps: Sequence[StepResult], in_process_sps: float | None, examples_per_request: int = 1) -> dict[str, Any]:
    """The load test's verdict, breaking and sustained rates and capacity factor, from its steps.

    verdict: held where the step at the base rate (factor 1) held, or broke where a step at or below it broke
    (a rate above a broken one is not tried); inconclusive where the generator could not keep the schedule first.
    The sustained rate is the achieved throughput of the highest step that held; the capacity factor divides it by
    the in-process throughput the cost model priced: a lower bound where no rate above the sustained one broke (the
    highest rate tried held, or the generator could not offer more), an upper bound where no rate held.
    """
    held = [s for s in steps if s.verdict == "held"]
    not_held = [s for s in steps if s.verdict != "held"]
    at_base = next((s for s in steps if s.factor == 1.0), None)
    first_bad = min(not_held, key=lambda s: s.target_rps) if not_held else None
    if at_base is not None and at_base.verdict == "held":
        verdict = "held"
    elif first_bad is not None and first_bad.verdict == "generator_limited":
        verdict = "inconclusive"
    elif first_bad is not None and (first_bad.factor is None or first_bad.factor <= 1.0):
        verdict = "broke"
    else:
        verdict = "inconclusive"
    best = max(held, key=lambda s: s.target_rps) if held else None
    broke = [s for s in not_held if s.verdict == "broke"]
    out: dict[str, Any] = {
        "verdict": verdict,
        "breaking_rps": min(s.target_rps for s in broke) if broke else None,
        "sustained_rps": best.achieved_rps if best else None,
        "sustained_sps": best.achieved_sps if best else None,
        "capacity_factor": None,
        "capacity_factor_bound": None,
    }
    if in_process_sps and in_process_sps > 0:
        if best is not None:
            out["capacity_factor"] = best.achieved_sps / in_process_sps
            above = [s for s in not_held if s.target_rps > best.target_rps]
            broke_above = bool(above) and min(above, key=lambda s: s.target_rps).verdict == "broke"
            out["capacity_factor_bound"] = "measured" if broke_above else "lower_bound"
        elif first_bad is not None:  # no rate held: the factor is below the lowest rate tried
            out["capacity_factor"] = first_bad.target_rps * examples_per_request / in_process_sps
            out["capacity_factor_bound"] = "upper_bound"
    return out
