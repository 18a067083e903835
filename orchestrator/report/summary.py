"""The run's summary: baseline, the recommended candidate (held-out checked), the Pareto set, search cost."""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd

from orchestrator.compress.recipe import Recipe
from orchestrator.cost.catalog import Catalog
from orchestrator.cost.model import CostResult
from orchestrator.report import _format as f
from orchestrator.report.recipes import knob_names
from orchestrator.tasks.base import quality_drop
from orchestrator.report.records import Candidate, Summary
from orchestrator.runtimes import REGISTRY

HOURS = 3600.0


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def knobs_of(row: pd.Series) -> dict[str, Any]:
    """The recipe knobs of a trial row."""
    return {k: _clean(row[k]) for k in knob_names() if k in row}


def within_bound(frame: pd.DataFrame, max_drop: float) -> pd.Series:
    """Finished, cost-feasible trials whose validation drop is within the bound."""
    return (
        (frame["status"] == "finished")
        & frame["feasible"].fillna(False).astype(bool)
        & (frame["quality_drop"].astype(float) <= max_drop + 1e-12)
    )


def fleet_capacity_sps(frame: pd.DataFrame) -> pd.Series:
    """What each candidate's priced fleet sustains: replicas × one instance's throughput (the headroom over traffic)."""
    per_instance = frame.get("instance_throughput_sps")
    if per_instance is None:
        return pd.Series(float("nan"), index=frame.index)
    return frame["replicas"].astype(float) * per_instance.astype(float)


def rank_candidates(candidates: pd.DataFrame) -> pd.DataFrame:
    """Cheapest first; ties on $ go to quality (smaller drop), then throughput headroom, then size, then trial id."""
    ranked = candidates.assign(_fleet_sps=fleet_capacity_sps(candidates).fillna(candidates["throughput_sps"]))
    ranked = ranked.sort_values(
        ["monthly_usd", "quality_drop", "_fleet_sps", "size_bytes", "trial_id"],
        ascending=[True, True, False, True, True],
        kind="mergesort",
    )
    return ranked.drop(columns="_fleet_sps")


def baseline_row(frame: pd.DataFrame) -> pd.Series | None:
    """The uncompressed baseline trial, where it finished."""
    rows = frame[frame["baseline"].fillna(False).astype(bool) & (frame["status"] == "finished")]
    return rows.iloc[0] if len(rows) else None


def recommend(
    frame: pd.DataFrame,
    max_drop: float,
    baseline_test: float,
    test_quality: Callable[[pd.Series], dict],
) -> tuple[pd.Series | None, list[dict[str, Any]]]:
    """Walk candidates from cheapest; the first whose held-out test drop also holds is recommended.

    Where that candidate costs no less than the priced, feasible baseline, compression saves
    nothing at this traffic and the baseline itself is recommended. `test_quality(row)`
    evaluates a candidate on the test split (memoized by the caller); where its result carries
    the paired interval of the drop (`drop`, `drop_ci95_high`), the check is `heldout_holds`'s.
    Returns the chosen row (or None) and the candidates passed over.
    """
    candidates = rank_candidates(frame[within_bound(frame, max_drop)])
    base = baseline_row(frame)
    passed_over: list[dict[str, Any]] = []

    def holds(row: pd.Series) -> tuple[bool, float, Any]:
        test = test_quality(row)
        test_drop = test["drop"] if test.get("drop") is not None else quality_drop(baseline_test, test["value"], test.get("higher_is_better", True))
        high = test.get("drop_ci95_high")
        return heldout_holds(test_drop, high, max_drop), test_drop, high

    for _, row in candidates.iterrows():
        held, test_drop, high = holds(row)
        if held:
            skipped = {p["trial_id"] for p in passed_over}
            for _, other in simpler_within_noise(row, candidates).iterrows():
                cheaper = _cheaper_than(other, candidates, skipped)
                if other["trial_id"] in skipped or not _preferred_over(other, cheaper) or not holds(other)[0]:
                    continue
                passed_over.extend(noise_tie_entry(c, other) for _, c in cheaper.iterrows())
                row = other
                break
            if compression_saves_nothing(row, base):
                test_quality(base)  # the summary reports the baseline's held-out figures
                return base, passed_over
            return row, passed_over
        measured = f"test drop {test_drop:.4f}" + (f" (paired 95% CI up to {high:.4f})" if f.finite(high) else "")
        passed_over.append(
            {
                "trial_id": row["trial_id"],
                "monthly_usd": _clean(row["monthly_usd"]),
                "reason": f"{measured} exceeds the bound {max_drop} (validation drop {row['quality_drop']:.4f})",
            }
        )
    return None, passed_over


def dollar_interval(row: pd.Series | dict) -> tuple[float, float] | None:
    """A trial row's $/month interval from its measurement's spread alone (monthly_usd_noise_low/_high); None where it
    has none. The range of a factor across CPU architectures is left out: it moves every candidate of a precision
    together, so it does not make two of them indistinguishable."""
    low, high = _clean(row.get("monthly_usd_noise_low")), _clean(row.get("monthly_usd_noise_high"))
    return (float(low), float(high)) if low is not None and high is not None else None


def within_noise(a: pd.Series | dict, b: pd.Series | dict) -> bool:
    """Whether two candidates' $/month intervals overlap (a point stands for a candidate without one).

    False where neither has an interval: two bare points are compared as points, by `rank_candidates`.
    """
    spans = []
    for row in (a, b):
        interval = dollar_interval(row)
        point = _clean(row.get("monthly_usd"))
        if interval is None and point is None:
            return False
        spans.append(interval or (float(point), float(point)))
    if dollar_interval(a) is None and dollar_interval(b) is None:
        return False
    (a_low, a_high), (b_low, b_high) = spans
    return a_low <= b_high + 1e-9 and b_low <= a_high + 1e-9


def simplicity(row: pd.Series | dict) -> tuple[int, int]:
    """(compression stages, the runtime's build cost) of a trial row: the lower, the simpler to build and to serve.

    The stages are the Recipe's (a knob at the teacher's value adds none); a row whose knobs no longer make a
    Recipe counts as the least simple, so it is never preferred.
    """
    knobs = {k: v for k, v in knobs_of(pd.Series(row) if isinstance(row, dict) else row).items() if v is not None}
    try:
        recipe = Recipe(**knobs)
        return len(recipe.stages()), REGISTRY.get(str(recipe.runtime)).build_cost
    except (ValueError, TypeError, KeyError):
        return 10**6, 10**6


def simpler_within_noise(chosen: pd.Series, candidates: pd.DataFrame) -> pd.DataFrame:
    """The candidates (feasible, within the bound) simpler than `chosen` whose $ interval overlaps its: the choice
    between them is within measurement noise. Simplest first, then cheapest (point $), then trial id.

    Where the table marks the Pareto set, only its members (the recommendation stays on the front the report shows).
    """
    mine = simplicity(chosen)
    if "pareto" in candidates:
        candidates = candidates[candidates["pareto"].fillna(False).astype(bool)]
    rows = [
        (simplicity(r), _clean(r.get("monthly_usd")) or 0.0, str(r["trial_id"]), i)
        for i, r in candidates.iterrows()
        if r["trial_id"] != chosen["trial_id"] and simplicity(r) < mine and within_noise(chosen, r)
    ]
    return candidates.loc[[i for *_, i in sorted(rows)]]


def _cheaper_than(other: pd.Series, candidates: pd.DataFrame, skipped: set) -> pd.DataFrame:
    """The candidates priced below `other` that were not already passed over (for their test drop)."""
    price = _clean(other.get("monthly_usd"))
    keep = [i for i, r in candidates.iterrows() if r["trial_id"] not in skipped and r["trial_id"] != other["trial_id"]
            and price is not None and (_clean(r.get("monthly_usd")) or 0.0) < price]  # fmt: skip
    return candidates.loc[keep]


def _preferred_over(simpler: pd.Series, cheaper: pd.DataFrame) -> bool:
    """Whether `simpler` may be recommended over every cheaper candidate: simpler than each and within noise of each,
    so every candidate it passes over is passed over for a true reason."""
    return len(cheaper) > 0 and all(
        simplicity(c) > simplicity(simpler) and within_noise(simpler, c) for _, c in cheaper.iterrows()
    )


def noise_tie_entry(cheaper: pd.Series, simpler: pd.Series) -> dict[str, Any]:
    """A passed-over entry saying why the cheapest candidate gave way to a simpler one within measurement noise."""
    stages = simplicity(cheaper)[0], simplicity(simpler)[0]
    return {
        "trial_id": cheaper["trial_id"],
        "monthly_usd": _clean(cheaper["monthly_usd"]),
        "noise_tie": True,
        "preferred": simpler["trial_id"],
        "reason": (
            f"its {_usd_span(cheaper)} is within measurement noise of trial {simpler['trial_id']}'s "
            f"{_usd_span(simpler)}, which is simpler ({stages[1]} compression stage{'s' if stages[1] != 1 else ''} "
            f"vs {stages[0]}, or a runtime cheaper to build)"
        ),
    }


def _usd_span(row: pd.Series) -> str:
    """'$740.95/month [$700.00, $1,799.45]' (the interval only where there is one)."""
    text = f"${float(row['monthly_usd']):,.2f}/month"
    interval = dollar_interval(row)
    return text + (f" [${interval[0]:,.2f}, ${interval[1]:,.2f}]" if interval else "")


def cheapest_on_measured_arch(cost: CostResult) -> dict[str, Any] | None:
    """Where a candidate's chosen instance is priced across CPU architectures: its cheapest feasible instance that is
    not (on the architecture it was measured on, or a GPU), so a reader sees a price that is no such projection.

    None where the chosen price is not a cross-architecture projection; instance_type None where nothing else is
    feasible. Display beside the recommendation: "not projected across architectures: N × TYPE, $X/month".
    """
    def across(entry: Any) -> bool:
        return bool(entry.cross_architecture) or str(entry.projection_method).startswith("cross-architecture")

    chosen = next((c for c in cost.per_instance if c.instance_type == cost.instance_type), None)
    if chosen is None or not across(chosen):
        return None
    others = [c for c in cost.per_instance if c.feasible and c.monthly_usd is not None and not across(c)]
    if not others:
        return {"instance_type": None, "reason": "no instance type on the measured architecture is feasible"}
    best = min(others, key=lambda c: (c.monthly_usd, c.replicas or 0, c.instance_type))
    return {
        "instance_type": best.instance_type,
        "replicas": best.replicas,
        "monthly_usd": best.monthly_usd,
        "monthly_usd_low": best.monthly_usd_low,
        "monthly_usd_high": best.monthly_usd_high,
        "projected": best.projected,
        "throughput_sps": best.throughput_sps,
        "projection_method": best.projection_method,
    }


def heldout_holds(test_drop: float, drop_ci95_high: float | None, max_drop: float) -> bool:
    """Whether a candidate's drop on the held-out test split is within the bound, with 97.5% confidence where it can be.

    With a paired interval (per-item differences to the teacher on the same test items), the whole
    interval must lie within the bound: its upper end, not just the point drop. Selecting the
    cheapest of many candidates on val favours those whose val drop came out low by chance; the
    upper end of a fresh, paired interval on test is what guards against that. Without per-item
    scores (a task that reports only a total), the point drop is all there is.
    """
    worst = drop_ci95_high if f.finite(drop_ci95_high) else test_drop
    return float(worst) <= max_drop + 1e-12


def search_cost(frame: pd.DataFrame, cpus_per_trial: float, gpus_per_trial: float, catalog: Catalog) -> dict[str, Any]:
    """CPU and GPU hours the trials took, priced per vCPU-hour / GPU-hour from the catalog's cheapest."""
    seconds = float(frame["trial_seconds"].fillna(0).astype(float).sum())
    cpu_hours = seconds * cpus_per_trial / HOURS
    gpu_hours = seconds * gpus_per_trial / HOURS
    cpu_rates = [(i.on_demand_usd_per_hour / i.vcpus, i.instance_type) for i in catalog.instances if not i.accelerator]
    gpu_rates = [(i.on_demand_usd_per_hour / i.accelerator_count, i.instance_type) for i in catalog.instances if i.accelerator and i.accelerator_count]
    cpu_rate, cpu_ref = min(cpu_rates) if cpu_rates else (0.0, None)
    gpu_rate, gpu_ref = min(gpu_rates) if gpu_rates else (0.0, None)
    usd = cpu_hours * cpu_rate + gpu_hours * gpu_rate
    return {
        "trial_seconds": round(seconds, 1),
        "cpu_hours": round(cpu_hours, 4),
        "gpu_hours": round(gpu_hours, 4),
        "usd_per_vcpu_hour": round(cpu_rate, 6),
        "usd_per_vcpu_hour_from": cpu_ref,
        "usd_per_gpu_hour": round(gpu_rate, 6),
        "usd_per_gpu_hour_from": gpu_ref,
        "usd": round(usd, 4),
        "method": "sum of trial wall seconds x resources per trial, priced at the catalog's cheapest on-demand vCPU-hour and GPU-hour",
    }


def compression_saves_nothing(row: pd.Series, base: pd.Series | None) -> bool:
    """True when a compressed candidate costs no less than the feasible, priced uncompressed baseline."""
    if base is None or bool(row.get("baseline")) or not bool(base.get("feasible")):
        return False
    base_usd, row_usd = _clean(base.get("monthly_usd")), _clean(row.get("monthly_usd"))
    return base_usd is not None and row_usd is not None and row_usd >= base_usd


def floor_note(frame: pd.DataFrame, max_drop: float, traffic: dict[str, Any]) -> dict[str, Any] | None:
    """Where every feasible candidate within the bound sits at min_replicas: say so, and at what traffic that ends.

    The baseline's fleet at the floor sustains min_replicas × one instance's throughput × the
    target utilization; above that peak traffic the baseline needs more instances, and
    compression starts to pay.
    """
    floor = traffic.get("min_replicas")
    candidates = frame[within_bound(frame, max_drop)]
    base = baseline_row(frame)
    if not floor or candidates.empty or not (candidates["replicas"].astype(float) == floor).all():
        return None
    note: dict[str, Any] = {"min_replicas": int(floor), "n_candidates": int(len(candidates))}
    per_instance = _clean(base.get("instance_throughput_sps")) if base is not None else None
    if base is not None and per_instance and bool(base.get("feasible")):
        util = float(traffic.get("target_utilization", 1.0))
        covers = floor * per_instance * util
        note.update(
            baseline_instance_type=base["instance_type"],
            baseline_instance_throughput_sps=per_instance,
            target_utilization=util,
            pays_above_rps=round(covers, 1),
            text=(
                f"every feasible candidate within the bound sits at min_replicas {floor}, so the floor, not the model, "
                f"sets the bill; the baseline's {floor} × {base['instance_type']} sustain {floor} × "
                f"{per_instance:,.0f} sps × {util:g} = {covers:,.0f} requests/s, so compression starts to pay only "
                f"above about {covers:,.0f} requests/s at peak"
            ),
        )
    else:
        note["text"] = (
            f"every feasible candidate within the bound sits at min_replicas {floor}, so the floor, not the model, "
            "sets the bill at this traffic"
        )
    return note


def _candidate(row: pd.Series) -> dict[str, Any]:
    """A trial row as summary.json describes it: every Candidate field the row holds, and its knobs."""
    fields = {name: _clean(row[name]) for name in Candidate.model_fields if name in row and name != "knobs"}
    return {**fields, "knobs": knobs_of(row)}


def build_summary(
    frame: pd.DataFrame,
    *,
    run_id: str,
    task: str,
    label: str | None = None,
    metric: str,
    max_drop: float,
    recommended: pd.Series | None,
    passed_over: list[dict],
    test_results: dict[str, dict],
    cost: dict[str, Any],
    inputs: dict[str, Any],
    costs: dict[str, CostResult] | None = None,
) -> Summary:
    """summary.json's content: the contract's keys (docs/architecture.md) and what the report needs.

    costs: trial id -> its cost model result (the trial record's `cost`), where known; the recommended one's gives
    `cheapest_on_measured_arch`.
    """
    base_row = baseline_row(frame)
    baseline = None
    if base_row is not None:
        baseline = {**_candidate(base_row), "test": test_results.get(base_row["trial_id"])}
    rec = None
    if recommended is not None:
        rec = _candidate(recommended)
        test = test_results[recommended["trial_id"]]
        rec.update(
            test_quality=test["value"],
            test_ci95=[test["ci95_low"], test["ci95_high"]],
            test_n=test["n_examples"],
            val_ci95=[_clean(recommended["quality_ci95_low"]), _clean(recommended["quality_ci95_high"])],
        )
        rec.update(savings_usd=None, savings_ratio=None)  # stay None where the baseline has no feasible price
        if baseline and baseline["monthly_usd"]:
            saved = baseline["monthly_usd"] - rec["monthly_usd"]
            rec.update(savings_usd=round(saved, 2), savings_ratio=round(saved / baseline["monthly_usd"], 4))
        if baseline and baseline["size_bytes"] and baseline["throughput_sps"]:  # known even where the baseline is unpriced
            size_base, thr_base = baseline["size_bytes"], baseline["throughput_sps"]
            rec.update(size_ratio=round(rec["size_bytes"] / size_base, 4), throughput_ratio=round(rec["throughput_sps"] / thr_base, 3))
        rec["passed_over"] = passed_over
        if cost["usd"] and (rec["savings_usd"] or 0) > 0:
            cost["payback_days"] = float(f"{cost['usd'] / (rec['savings_usd'] / inputs['traffic']['days_per_month']):.4g}")  # 4 significant digits, however small
    pareto_rows = frame[frame["pareto"].astype(bool)].sort_values(["monthly_usd", "trial_id"])  # the report's order
    kept_baseline = rec is not None and base_row is not None and rec["trial_id"] == base_row["trial_id"]
    keep_reason = (
        _keep_reason(_cheapest_compressed(frame, max_drop, base_row, passed_over), frame, max_drop) if kept_baseline else None
    )
    floor = floor_note(frame, max_drop, inputs.get("traffic", {}))
    tie = next((p for p in passed_over if p.get("noise_tie")), None)
    if kept_baseline and tie is not None and tie["preferred"] == rec["trial_id"]:
        keep_reason = f"the cheapest compressed candidate within the bound, trial {tie['trial_id']}: {tie['reason']}"
    note = _note(rec, passed_over, keep_reason)
    measured_arch = None
    if recommended is not None and costs and recommended["trial_id"] in costs:
        measured_arch = cheapest_on_measured_arch(costs[recommended["trial_id"]])
    if floor is not None:
        note += "; " + floor["text"]
    return Summary.model_validate({
        "run_id": run_id,
        "task": task,
        "label": label or task,
        "quality_metric": metric,
        "max_quality_drop": max_drop,
        "n_trials": int(len(frame)),
        "n_finished": int((frame["status"] == "finished").sum()),
        "n_failed": int((frame["status"] == "failed").sum()),
        "n_stopped": int((frame["status"] == "stopped").sum()),
        "baseline": baseline,
        "recommended": rec,
        "recommendation_note": note,
        "keep_baseline": kept_baseline,
        "keep_baseline_reason": keep_reason,
        "replica_floor": floor,
        "cheapest_on_measured_arch": measured_arch,
        "within_noise": tie,
        "pareto": [_candidate(r) for _, r in pareto_rows.iterrows()],
        "search_cost": cost,
        "inputs": inputs,
    })  # fmt: skip


def _cheapest_compressed(
    frame: pd.DataFrame, max_drop: float, base: pd.Series | None, passed_over: list[dict]
) -> pd.Series | None:
    """The compressed candidate `recommend` weighed against the baseline: the cheapest within the bound on val and test."""
    skipped = {p["trial_id"] for p in passed_over} | ({base["trial_id"]} if base is not None else set())
    candidates = rank_candidates(frame[within_bound(frame, max_drop)])
    candidates = candidates[~candidates["trial_id"].isin(skipped)]
    return candidates.iloc[0] if len(candidates) else None


def _keep_reason(cheapest: pd.Series | None, frame: pd.DataFrame, max_drop: float) -> str:
    """Why the uncompressed baseline is recommended, as the report's sentences quote it."""
    if cheapest is None:
        done = frame[(frame["status"] == "finished") & ~frame["baseline"].fillna(False).astype(bool)]
        if not len(done):
            return "no compressed candidate finished"
        closest = done.sort_values(["quality_drop", "monthly_usd"], kind="mergesort").iloc[0]
        return (
            f"no compressed candidate stayed within the quality bound ({max_drop:g}); the closest, trial "
            f"{closest['trial_id']}, lost {float(closest['quality_drop']):.4f}"
            + (f" at ${float(closest['monthly_usd']):,.2f}/month" if pd.notna(closest["monthly_usd"]) else "")
        )
    reason = "compression saves nothing at this traffic"
    if cheapest is not None:
        reason += (
            f", the cheapest compressed candidate within the bound (trial {cheapest['trial_id']}) costs "
            f"${float(cheapest['monthly_usd']):,.2f}/month, no less"
        )
    return reason


def _note(rec: dict | None, passed_over: list[dict], keep_reason: str | None) -> str:
    if rec is None:
        return "no candidate is cost-feasible and within the quality bound on both validation and test"
    if keep_reason is not None:
        return f"keep the uncompressed model (trial {rec['trial_id']}, ${rec['monthly_usd']:,.2f}/month): {keep_reason}"
    note = f"trial {rec['trial_id']}: the cheapest feasible candidate within the quality bound on validation and test"
    if any(p.get("noise_tie") for p in passed_over):
        note = (
            f"trial {rec['trial_id']}: the simplest feasible candidate within the quality bound on validation and test "
            "whose $/month is within measurement noise of the cheapest"
        )
    if passed_over:
        note += "; cheaper candidates passed over: " + "; ".join(f"{p['trial_id']} ({p['reason']})" for p in passed_over)
    return note
