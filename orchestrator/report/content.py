"""What the report says, in order of importance, independent of how it is written (HTML or Markdown)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import pandas as pd

from orchestrator.report import _format as f
from orchestrator.report import plots, tables, tokens
from orchestrator.report.importance import Importance, param_importances
from orchestrator.report.loadtest import held_under_load_table
from orchestrator.report.rundata import RunData
from orchestrator.report import recipes
from orchestrator.report.recipes import SHAPE_COLUMNS
from orchestrator.report.records import Candidate, TrialRecord
from orchestrator.techniques.domains import Range

Items = list[tuple[str, str]]


@dataclass
class Report:
    """The report's content: sentences, label/value items, tables and SVG figures."""

    title: str
    verdict: str
    headline: Items
    knobs: tables.Table
    pareto: tables.Table
    pareto_csv: pd.DataFrame
    runtimes: tables.Table | None
    runtimes_note: str
    explanation: tables.Table | None
    explanation_note: str
    measured_on_types: tables.Table | None
    held_under_load: tables.Table | None
    threshold: tables.Table
    heldout: tables.Table
    heldout_note: str
    importance: Importance
    importance_table: tables.Table
    failures: tables.Table
    infeasible: tables.Table
    passed_over: tables.Table
    fallbacks: tables.Table
    search_cost: Items
    inputs: Items
    formulas: list[str]
    files: Items
    counts: str
    figures: dict[str, str | None] = field(default_factory=dict)


MEASURED_NOTE = (
    "The baseline and each Pareto candidate within the bound, rebuilt and measured again on one node of each instance "
    "type the cluster declared (hedgerow.io/instance-type), interleaved against the teacher there; the cost model uses "
    "the measured figure for that type. Projection error = projected / measured − 1."
)
RUNTIMES_INTRO = (
    "Each runtime the search tried, with its cheapest feasible candidate within the quality bound (ranked as the "
    "recommendation is; candidates set aside by the held-out check left out). Throughput is as measured on the search's "
    "device (trials.csv throughput_sps); "
    "start-up is the cold start (compile or session creation + first batch), measured apart from throughput; "
    "kernels run on: the CPU architectures the candidate can be priced on (trials.csv column kernel_archs)."
)
NOT_MEASURED = (
    "No node of this search's Ray cluster declared an instance type (node label hedgerow.io/instance-type), so every "
    "CPU figure above is projected from the measured device by the rule shown. A type that was never measured can "
    "still be deployed to; it stays labelled projected."
)


def reference_usd(run: RunData) -> dict[str, float]:
    """For each finished infeasible trial: the $ of its cheapest priceable instance, the SLO set aside."""
    out = {}
    done = tables.finished(run.trials)
    for _, row in done[~done["feasible"].astype(bool)].iterrows():
        ref = tables.cheapest_priced(run.records.get(row.get("recipe_key")) if isinstance(row.get("recipe_key"), str) else None)
        if ref is not None and ref.monthly_usd is not None:
            out[str(row["trial_id"])] = float(ref.monthly_usd)
    return out


def verdict(run: RunData) -> str:
    """The report in one sentence."""
    rec, base = run.recommended, run.baseline
    if rec is None:
        return "No recommendation: " + str(run.summary.recommendation_note or "no candidate qualified") + "."
    if run.summary.keep_baseline:
        return (
            f"Keep the uncompressed model ({runtime_text(rec)}) on {f.integer(rec.replicas)} × {rec.instance_type} for "
            f"{f.usd(rec.monthly_usd)}/month{_per_token(run, rec)}: {run.summary.keep_baseline_reason}."
        )
    text = (
        f"Serve trial {rec.trial_id} ({recipe_text(run, rec)}) with {f.runtime(rec.runtime)} "
        f"on {f.integer(rec.replicas)} × {rec.instance_type} for {f.usd(rec.monthly_usd)}/month" + _per_token(run, rec)
    )
    if rec.savings_usd is not None and base is not None and base.monthly_usd:
        text += (
            f": {f.usd(rec.savings_usd)}/month ({f.percent(rec.savings_ratio)}) less than the uncompressed baseline's "
            f"{f.usd(base.monthly_usd)} on {f.integer(base.replicas)} × {base.instance_type}"
        )
    elif base is not None:
        text += "; the uncompressed baseline cannot meet the SLO on any instance in the catalog"
    if run.perplexity:
        text += (
            f", perplexity {tokens.percent_change(tokens.change(rec.quality_drop))} against the baseline's "
            f"(Δ log_perplexity {f.drop(rec.quality_drop)} nats; bound {tokens.bound_text(run.max_drop, _max_increase(run))})"
        )
    else:
        text += f", giving up {f.drop(rec.quality_drop)} of {run.metric} (bound {run.max_drop:g})"
    return text + (f"; cold start {f.seconds(rec.startup_seconds)} s." if not f.missing(rec.startup_seconds) else ".")


def _per_token(run: RunData, candidate: Candidate) -> str:
    """' ($0.0232 per million output tokens)' for a candidate priced by its tokens; '' otherwise."""
    value = token_figure(run, candidate, "usd_per_million_output_tokens")
    return f" ({tokens.usd_per_million(value)} per million output tokens)" if f.finite(value) else ""


def token_figure(run: RunData, candidate: Candidate | None, key: str) -> Any:
    """A candidate's token figure (tokens.TOKEN_COLUMNS) as summary.json holds it, else as its trials.csv row does."""
    if candidate is None:
        return None
    value = getattr(candidate, key, None)
    if f.missing(value):
        row = run.row(candidate.trial_id)
        value = row.get(key) if row is not None else None
    return None if f.missing(value) else value


def _max_increase(run: RunData) -> Any:
    """objective.max_perplexity_increase as the run's config (or summary inputs) holds it, where it was given."""
    given = (run.summary.inputs.get("objective") or {}).get("max_perplexity_increase")
    return given if given is not None else getattr(run.config.objective, "max_perplexity_increase", None)


def _decoder(run: RunData) -> bool:
    """A decoder LLM's run: judged by log-perplexity or priced by its output tokens."""
    return run.perplexity or run.priced_by_tokens


def recipe_text(run: RunData, candidate: Candidate) -> str:
    """A summary candidate's recipe in one line: the knobs the space searched, and its transformer's shape where recorded."""
    row = run.row(candidate.trial_id)
    shape = {c: row[c] for c in SHAPE_COLUMNS if c in row} if row is not None else {}
    return recipes.recipe_text({**candidate.knobs, **shape}, run.knobs, with_runtime=False)


def runtime_text(candidate: Candidate) -> str:
    """'ONNX Runtime, cold start 0.412 s': a summary candidate's runtime and start-up, where recorded."""
    cold = f", cold start {f.seconds(candidate.startup_seconds)} s" if not f.missing(candidate.startup_seconds) else ""
    return f.runtime(candidate.runtime) + cold


def _test_drop_text(rec: Candidate) -> str:
    """', drop 0.0042 [paired 95% CI -0.0030, 0.0110]' where the summary holds the held-out paired interval."""
    low, high = rec.test_drop_ci95 or [None, None]
    if f.missing(rec.test_drop) or f.missing(low) or f.missing(high):
        return ""
    return f", drop {f.drop(rec.test_drop)} [paired 95% CI {float(low):.4f}, {float(high):.4f}]"


def headline(run: RunData) -> Items:
    """The recommended candidate against the baseline: knobs, quality, serving, $, savings, size, throughput."""
    rec, base = run.recommended, run.baseline
    if rec is None:
        return [("recommendation", str(run.summary.recommendation_note or "none"))]
    base = base or Candidate(trial_id="")
    base_test = (base.test or {}).get("value")
    by_tokens = run.priced_by_tokens
    quality = (
        _perplexity_line(run, rec, base) if run.perplexity else
        f"{run.metric} {f.quality(rec.quality)} on validation (baseline {f.quality(base.quality)}), "
        f"drop {f.drop(rec.quality_drop)} within the bound {run.max_drop:g}; on test "
        f"{f.quality(rec.test_quality)} (baseline {f.quality(base_test)})" + _test_drop_text(rec)
    )  # fmt: skip
    concurrency = token_figure(run, rec, "concurrency")
    items: Items = [
        ("recommended", f"trial {rec.trial_id}: {recipe_text(run, rec)}"),
        ("quality", quality),
        ("serving", f"{f.integer(rec.replicas)} × {rec.instance_type}"
                    + (f", {f.integer(concurrency)} concurrent requests per worker" if f.finite(concurrency) else "")
                    + _how_priced(run, rec)),
        ("runtime", _runtime_line(run, rec)),
        ("monthly $", f"{f.usd(rec.monthly_usd)}/month" + _usd_range(rec)),
    ]  # fmt: skip
    measured_arch = run.summary.cheapest_on_measured_arch
    if measured_arch:
        items.append(("on the measured architecture", _measured_arch_text(measured_arch)))
    tie = run.summary.within_noise
    if tie and tie.get("reason"):
        items.append(("within measurement noise", f"trial {tie.get('trial_id')}: {tie['reason']}; the simpler one is "
                                                  "recommended"))  # fmt: skip
    if by_tokens:
        items.append(("$ per million output tokens", _per_token_line(run, rec, base)))
    if run.summary.keep_baseline:
        items.append(("savings", f"none: {run.summary.keep_baseline_reason}"))
    elif rec.savings_usd is not None:
        spend = 1 - rec.savings_ratio if f.finite(rec.savings_ratio) else None
        items.append(("savings", f"{f.usd(rec.savings_usd)}/month saved: {f.percent(rec.savings_ratio)} less than the "
                                 f"baseline's {f.usd(base.monthly_usd)}/month on {f.integer(base.replicas)} × "
                                 f"{base.instance_type} ({f.ratio(spend)} its spend)"))  # fmt: skip
    else:
        items.append(("savings", _no_savings(run)))
    for label, r, b, r_text, b_text in _footprint(run, rec, base):
        ratio = r / b if f.finite(r) and f.finite(b) and b else None
        items.append((label, f"{r_text} against the baseline's {b_text} ({f.ratio(ratio)})"))
    floor = run.summary.replica_floor
    if floor and floor.get("text"):
        items.append(("replica floor", str(floor["text"])))
    payback = run.summary.search_cost.get("payback_days")
    if payback is not None:
        items.append(("payback", f"the search cost {_usd_small(run.summary.search_cost.get('usd'))}, paid back by "
                                 f"{_days(payback)} of savings"))  # fmt: skip
    return items


def _usd_range(candidate: Candidate) -> str:
    """' [$low to $high: N to M × TYPE]', the $ at the ends of the throughput's range (its measured spread and any
    projection factor's range), in whole instances; empty where the candidate has no range."""
    if not (f.finite(candidate.monthly_usd_low) and f.finite(candidate.monthly_usd_high)):
        return ""
    replicas = (
        f": {f.integer(candidate.replicas_low)} to {f.integer(candidate.replicas_high)} × {candidate.instance_type}"
        if candidate.replicas_low is not None and candidate.replicas_high is not None else ""
    )
    return (f" [{f.usd(candidate.monthly_usd_low)} to {f.usd(candidate.monthly_usd_high)}{replicas}; the ends of the "
            "throughput's measured spread and projection range]")  # fmt: skip


def _measured_arch_text(entry: dict[str, Any]) -> str:
    """The recommended candidate's cheapest price that is not projected across CPU architectures."""
    if entry.get("instance_type") is None:
        return str(entry.get("reason") or "no instance type on the measured architecture is feasible")
    how = "projected from the measured device" if entry.get("projected") else "measured"
    low, high = entry.get("monthly_usd_low"), entry.get("monthly_usd_high")
    span = f" [{f.usd(low)} to {f.usd(high)}]" if f.finite(low) and f.finite(high) else ""
    return (f"{f.integer(entry.get('replicas'))} × {entry['instance_type']} for {f.usd(entry.get('monthly_usd'))}/month"
            f"{span} ({how}, not across architectures)")  # fmt: skip


def _perplexity_line(run: RunData, rec: Candidate, base: Candidate) -> str:
    """A log-perplexity run's quality: perplexity on val and test, each change against the baseline with its paired
    95% interval, converted from nats as exp(·) − 1, and the bound."""
    q = tokens.PerplexityText()
    row = run.row(rec.trial_id)
    val_low, val_high = _pair(rec.val_drop_ci95, row, "quality_drop_ci95")
    test_drop = rec.test_drop if not f.missing(rec.test_drop) else (row.get("test_quality_drop") if row is not None else None)
    test_low, test_high = _pair(rec.test_drop_ci95, row, "test_quality_drop_ci95")
    return (
        f"perplexity {q.value(rec.quality)} on validation against the baseline's {q.value(base.quality)}: change "
        f"{q.change(rec.quality_drop, val_low, val_high)}, within the bound {tokens.bound_text(run.max_drop, _max_increase(run))}; "
        f"on test {q.value(rec.test_quality)} against the baseline's {q.value((base.test or {}).get('value'))}: change "
        f"{q.change(test_drop, test_low, test_high)} (brackets: paired 95% CI, per-window differences to the baseline)"
    )


def _pair(stored: list[float | None] | None, row: pd.Series | None, prefix: str) -> tuple[Any, Any]:
    """A paired interval as the summary holds it, else from the trials.csv row's `<prefix>_low` / `_high`."""
    if stored and not any(f.missing(v) for v in stored):
        return stored[0], stored[1]
    if row is None:
        return None, None
    return row.get(f"{prefix}_low"), row.get(f"{prefix}_high")


def _per_token_line(run: RunData, rec: Candidate, base: Candidate) -> str:
    """$ per million output tokens of the recommended candidate against the baseline's, and the saving per token."""
    r = token_figure(run, rec, "usd_per_million_output_tokens")
    b = token_figure(run, base, "usd_per_million_output_tokens") if base.trial_id else None
    text = f"{tokens.usd_per_million(r)} on {rec.instance_type}"
    if not (f.finite(r) and f.finite(b) and b):
        return text + " (the baseline has no price per token: it is infeasible on every instance)"
    saved = 1 - float(r) / float(b)
    return (
        text + f" against the baseline's {tokens.usd_per_million(b)} on {base.instance_type}: "
        f"{f.percent(saved)} less per token (1 − {tokens.usd_per_million(r)} / {tokens.usd_per_million(b)})"
    )


def _footprint(run: RunData, rec: Candidate, base: Candidate) -> list[tuple[str, Any, Any, str, str]]:
    """(label, recommended, baseline, each as written) for size and throughput; an LLM's in tokens and requests."""
    if not run.priced_by_tokens:
        return [(label, getattr(rec, key), getattr(base, key), show(getattr(rec, key)), show(getattr(base, key)))
                for label, key, show in (("size", "size_bytes", f.size), ("throughput", "throughput_sps", f.sps))]  # fmt: skip

    def size(c: Candidate) -> Any:
        return c.size_bytes if not f.missing(c.size_bytes) else token_figure(run, c, "weight_bytes")

    def worker_tokens(c: Candidate) -> str:
        level = token_figure(run, c, "concurrency")
        at = f" at concurrency {f.integer(level)}" if f.finite(level) else ""
        return tokens.tokens_per_s(token_figure(run, c, "output_tokens_per_s")) + at

    r_tok, b_tok = token_figure(run, rec, "output_tokens_per_s"), token_figure(run, base, "output_tokens_per_s")
    return [
        ("size", size(rec), size(base), f.size(size(rec)), f.size(size(base))),
        ("output tokens/s (one worker)", r_tok, b_tok, worker_tokens(rec), worker_tokens(base)),
        ("requests/s (one worker)", rec.throughput_sps, base.throughput_sps, tokens.rate(rec.throughput_sps),
         tokens.rate(base.throughput_sps)),
    ]  # fmt: skip


def _how_priced(run: RunData, rec: Candidate) -> str:
    """How the recommended instance's throughput was found: measured, projected, or projected across architectures."""
    arch, measured_on = tables.instance_arch(run.record(rec.trial_id), rec.instance_type)
    if measured_on is not None:
        return f" (throughput projected across architectures: measured on {measured_on}, the instance is {arch})"
    return " (throughput projected from the measured device)" if rec.projected else " (throughput measured)"


def _runtime_line(run: RunData, rec: Candidate) -> str:
    """The recommended candidate's runtime and its cold start, with how the start-up was measured."""
    text = f"{f.runtime(rec.runtime)} (runtime {rec.runtime})"
    startup = rec.startup_seconds
    if f.missing(startup):
        return text + "; cold start not recorded" + ("" if run.priced_by_tokens else " (a run from before start-up was measured)")
    record = run.record(rec.trial_id)
    how = record.startup.get("method") if record is not None else None
    return (
        text + f"; cold start {f.seconds(startup)} s, measured apart from throughput" + (f": {how}" if how else "")
        + ". It is what a new replica waits before serving when the fleet scales out"
    )  # fmt: skip


def runtimes_note(run: RunData, best: dict[str, pd.Series | None]) -> str:
    """Why the recommended runtime won: its candidate's kernels and instance against each other runtime's cheapest."""
    rec = run.recommended
    if rec is None:
        return "No candidate is recommended; the table shows each runtime's cheapest feasible candidate within the bound."
    name = rec.runtime
    record = run.record(rec.trial_id)
    arch, measured_on = tables.instance_arch(record, rec.instance_type)
    row = run.row(rec.trial_id)
    archs = row.get("kernel_archs") if row is not None else None
    lead = f"{f.runtime(name)} is recommended: trial {rec.trial_id}'s kernels run on {f.archs(archs)}"
    serving = f"{f.integer(rec.replicas)} × {rec.instance_type}"
    if arch is not None:
        entry = tables.chosen_entry(record, rec.instance_type)
        price = f.usd_rate(entry.on_demand_usd_per_hour if entry is not None else None)
        if measured_on:
            lead += (
                f", so it can use {arch} instances: {serving} ({price}, throughput projected across architectures "
                f"from {measured_on}) cost {f.usd(rec.monthly_usd)}/month."
            )
        else:
            lead += f"; {serving} ({arch}, {price}) cost {f.usd(rec.monthly_usd)}/month."
    else:
        lead += f": {serving} cost {f.usd(rec.monthly_usd)}/month."
    others = [_runtime_against(run, other, r, arch) for other, r in best.items() if other != name]
    ties = [r for other, r in best.items() if other != name and r is not None and r["monthly_usd"] == rec.monthly_usd]
    if ties:
        others.append(
            f"Where the $/month ties, the smaller quality drop wins, then the more throughput the fleet has to spare: trial "
            f"{rec.trial_id} measured {f.integer(rec.throughput_sps)} sps against "
            + ", ".join(f"trial {r['trial_id']}'s {f.integer(r['throughput_sps'])} sps" for r in ties) + "."
        )
    return " ".join([lead, *others])


def _runtime_against(run: RunData, name: str, row: pd.Series | None, winner_arch: str | None) -> str:
    """One other runtime's cheapest candidate, and whether its kernels could use the recommended instance's architecture."""
    if row is None:
        return f"{f.runtime(name)}: no feasible candidate within the bound that held on test."
    text = (
        f"{f.runtime(name)}'s cheapest, trial {row['trial_id']}, costs {f.usd(row['monthly_usd'])}/month on "
        f"{f.integer(row['replicas'])} × {row['instance_type']}; its kernels run on {f.archs(row.get('kernel_archs'))}"
    )
    archs = str(row.get("kernel_archs") or "")
    unpriced = tables.unpriced_for_kernels(run.records.get(row["recipe_key"]) if isinstance(row.get("recipe_key"), str) else None)
    if winner_arch and archs not in ("", "any") and winner_arch not in archs.split(",") and unpriced:
        text += f", so {winner_arch} instances were not priced for it ({', '.join(unpriced)}: needs {archs.replace(',', '/')})"
    return text + "."


def _no_savings(run: RunData) -> str:
    base = run.baseline
    if base is None:
        return "no figure: the baseline trial did not finish"
    ref = tables.cheapest_priced(run.record(base.trial_id))
    text = "no figure: the uncompressed baseline is infeasible on every instance in the catalog"
    if ref is not None:
        text += (
            f" (its cheapest, {f.integer(ref.replicas)} × {ref.instance_type} at {f.usd(ref.monthly_usd)}/month, "
            f"fails: {ref.reason}); compression is what makes serving within the SLO possible"
        )
    return text


def _days(days: float) -> str:
    """A payback period in the largest unit that is at least one: days, hours, minutes or seconds."""
    for unit, per_day in (("day", 1), ("hour", 24), ("minute", 24 * 60)):
        amount = days * per_day
        if amount >= 1:
            return f"{amount:.3g} {unit}{'' if f'{amount:.3g}' == '1' else 's'}"
    seconds = days * 24 * 3600
    return f"{seconds:.2g} seconds"


def _batch_of(shape: Any) -> Any:
    """The batch size in a stored batch shape: [N, ...] for one tensor, {name: [N, ...]} for named inputs."""
    if isinstance(shape, dict):
        return next(iter(shape.values()))[0] if shape else f.DASH
    return shape[0]


def _usd_small(value: Any) -> str:
    return f.DASH if f.missing(value) else (f"${float(value):,.4f}" if float(value) < 1 else f.usd(value))


def knobs_table(run: RunData) -> tables.Table:
    """The knobs the search space sampled or fixed, for the recommended candidate next to the baseline, and a
    transformer's depth and widths."""
    if run.recommended is None:
        return tables.Table(["knob", "recommended", "baseline"], [])
    # A knob that does not apply to a candidate (kd_* without distillation) is left out of its column.
    rec = recipes.applicable(run.recommended.knobs, run.knobs)
    base = recipes.applicable(run.baseline.knobs if run.baseline is not None else {}, run.knobs)
    rows = [[k, f.number(rec.get(k), 6), f.number(base.get(k), 6)] for k in run.knobs if k in rec or k in base]
    # A transformer's depth and widths, as the trials recorded them (the baseline's are the teacher's).
    rec_row = run.row(run.recommended.trial_id)
    base_row = run.row(run.baseline.trial_id if run.baseline is not None else None)
    for column in SHAPE_COLUMNS[:3]:
        values = [row.get(column) if row is not None else None for row in (rec_row, base_row)]
        if any(not f.missing(v) for v in values):
            rows.append([tokens.SHAPE_LABELS[column] if _decoder(run) else column, *(f.number(v, 6) for v in values)])
    return tables.Table(["knob", "recommended", "baseline"], rows)


def search_cost(run: RunData) -> Items:
    """What the search cost and how soon its savings pay it back."""
    cost = run.summary.search_cost
    savings = run.recommended.savings_usd if run.recommended is not None else None
    items: Items = [
        ("trial time", f"{f.number(cost.get('trial_seconds'), 6)} s summed over trials"),
        ("CPU", f"{f.hours(cost.get('cpu_hours'))} at {_usd_small(cost.get('usd_per_vcpu_hour'))}/vCPU-hour "
                + _rate_from(cost.get("usd_per_vcpu_hour_from"), "CPU")),
        ("GPU", f"{f.hours(cost.get('gpu_hours'))} at {_usd_small(cost.get('usd_per_gpu_hour'))}/GPU-hour "
                + _rate_from(cost.get("usd_per_gpu_hour_from"), "GPU")),
        ("search cost", f"{_usd_small(cost.get('usd'))} ({cost.get('method', '')})"),
    ]  # fmt: skip
    days = run.summary.inputs.get("traffic", {}).get("days_per_month")
    if cost.get("payback_days") is not None:
        items.append(("payback", f"{_days(cost['payback_days'])} = {_usd_small(cost.get('usd'))} / "
                                 f"({f.usd(savings)}/month / {f.number(days, 6)} days/month)"))  # fmt: skip
    else:
        items.append(("payback", "no figure: there are no savings against a priced baseline to pay it back"))
    return items


def _rate_from(instance: Any, kind: str) -> str:
    """'(c7i.large, the catalog's cheapest)', or why there is no rate."""
    return f"({instance}, the catalog's cheapest)" if instance else f"(no {kind} instance in the catalog)"


def inputs(run: RunData) -> Items:
    """Everything the figures above follow from: traffic, SLO, catalog, measured device, hours."""
    given = run.summary.inputs
    traffic = given.get("traffic") or run.config.traffic.model_dump(mode="json")
    search, deployment = run.config.search, run.config.deployment
    device = _device(run)
    profile = traffic.get("hourly_rps_profile")
    token_traffic = traffic.get("tokens")
    if token_traffic is None and getattr(run.config.traffic, "tokens", None) is not None:
        token_traffic = run.config.traffic.tokens.model_dump(mode="json")
    slo = traffic.get("latency_slo_p95_ms")
    demand: Items = (
        _token_inputs(token_traffic, slo) if token_traffic else
        [("SLO", f"p95 latency of one batch of {traffic.get('serving_batch_size')} ≤ {f.number(slo, 10)} ms"
                 if slo is not None else "no latency SLO given")]
    )  # fmt: skip
    quality = (
        f"{run.metric} on the validation split: nats per token, lower is better, perplexity = exp(log_perplexity); "
        f"bound: perplexity at most {tokens.bound_text(run.max_drop, _max_increase(run))} above the baseline's"
        if run.perplexity else f"{run.metric} on the validation split; bound: at most {run.max_drop:g} below the baseline"
    )  # fmt: skip
    items: Items = [
        ("traffic", f"peak {f.number(traffic.get('peak_rps'), 10)} requests/s"
                    + (f", mean {f.number(traffic.get('mean_rps'), 10)}" if traffic.get("mean_rps") is not None else "")
                    + (f", hourly profile {profile}" if profile else "")),
        *demand,
        ("sizing", f"target utilization {f.number(traffic.get('target_utilization'), 6)}, "
                   f"at least {traffic.get('min_replicas')} replicas"),
        ("hours per month", f"{f.number(traffic.get('hours_per_month'), 10)} ({f.number(traffic.get('days_per_month'), 6)} days)"),
        ("quality", quality),
        ("catalog", f"{given.get('catalog_file')} (as of {given.get('catalog_as_of')}), region {given.get('region')}"),
        ("instance types", ", ".join(given.get("instance_types") or [])
                           + (f" (filter {deployment.instance_filter})" if deployment.instance_filter else " (no filter)")),
        ("memory headroom", f"{f.number(given.get('memory_headroom'), 6)} of device memory kept free"),
        ("measured device", device),
        ("throughput", _throughput_method(run)),
        ("measured on instance", str(deployment.measured_instance_type or "not a catalog instance: every catalog "
                                     "instance's throughput is projected from the measured device")),
        ("search", f"{run.summary.n_trials} trials, sampler {search.sampler}, seed {search.seed}, "
                   f"scheduler {search.scheduler}, {f.number(search.resources_per_trial.cpu)} CPU and "
                   f"{f.number(search.resources_per_trial.gpu)} GPU per trial"),
    ]  # fmt: skip
    return items


def _token_inputs(given: dict[str, Any], slo_ms: Any) -> Items:
    """An LLM's traffic in tokens: prompt and answer lengths, the TTFT/TPOT SLOs, the concurrencies measured."""

    def length(name: str) -> str:
        p95 = given.get(f"{name}_p95")
        return f"{f.number(given.get(name), 10)}" + (f" (p95 {f.number(p95, 10)})" if p95 is not None else "")

    slos = [
        f"{label} p95 ≤ {f.number(given.get(key), 10)} ms" if given.get(key) is not None else f"no {label} SLO"
        for label, key in (("TTFT", "ttft_slo_p95_ms"), ("TPOT", "tpot_slo_p95_ms"))
    ]
    if slo_ms is not None:
        slos.append(f"a whole answer's p95 (TTFT + (output tokens − 1) × TPOT) ≤ {f.number(slo_ms, 10)} ms")
    levels = ", ".join(str(c) for c in given.get("concurrency") or []) or f.DASH
    return [
        ("tokens", f"prompt {length('prompt_tokens')} tokens, output {length('output_tokens')} tokens per request "
                   f"(answers capped at {given.get('max_new_tokens_limit')} new tokens); the mean output sizes the fleet, "
                   "the p95 lengths (the means where not given) bound the KV cache"),
        ("SLO", "; ".join(slos)),
        ("concurrency measured", f"{levels} concurrent requests per worker; each instance serves the one with the most "
                                 "output tokens/s that meets the SLOs and fits memory"),
    ]  # fmt: skip


def _leading_records(run: RunData) -> Iterator[TrialRecord]:
    """The stored records of the recommended trial, then the baseline: where run-wide facts are read from."""
    for candidate in (run.recommended, run.baseline):
        record = run.record(candidate.trial_id) if candidate is not None else None
        if record is not None:
            yield record


def _throughput_method(run: RunData) -> str:
    for record in _leading_records(run):
        how = record.throughput
        if how and how.get("reference"):
            ref = how["reference"]
            return (
                f"each candidate's ratio to the teacher (median over {len(how.get('ratio_rounds') or [])} interleaved rounds) "
                f"× this machine's teacher reference of {f.number(ref['throughput_sps'], 6)} samples/s "
                f"(batch {_batch_of(ref['batch_shape'])}, {ref['device']['threads']} thread(s), measured {ref['measured_at']} "
                f"on host {ref['host']}, kept in {ref['path']})"
            )
        if how:
            return str(how.get("method"))
    return f.DASH


def _device(run: RunData) -> str:
    for record in _leading_records(run):
        if "device" in record.metrics:
            d = record.metrics["device"]
            return f"{d.get('name')} ({d.get('kind')}, {d.get('arch')}, {d.get('capability')}), {d.get('threads')} thread(s)"
    done = tables.finished(run.trials)
    if len(done) and "device" in done:
        return f"{done['device'].iloc[0]} ({done['device_kind'].iloc[0]}), {done['threads'].iloc[0]} thread(s)"
    return f.DASH


FORMULAS = [
    "throughput_sps = throughput_ratio_to_teacher × teacher_reference_sps (trials.csv; raw_throughput_sps is this "
    "process's own median, kept for comparison)",
    "replicas = max(min_replicas, ceil(peak_rps / (throughput_sps × target_utilization)))",
    "monthly $ = replicas × on-demand $/hour × hours_per_month (with an hourly profile: the sum over 24 hours of "
    "that hour's replicas × $/hour × hours_per_month / 24)",
    "feasible = peak memory ≤ device memory × (1 − memory headroom) and batch p95 latency ≤ SLO",
    "savings = baseline $/month − recommended $/month; ratio = savings / baseline $/month",
    "payback days = search $ / (savings $/month / days per month)",
]


def counts(run: RunData) -> str:
    s = run.summary
    return (
        f"{s.n_trials} trials: {s.n_finished} finished, {s.n_failed} failed, "
        f"{s.n_stopped} stopped early; {int(run.trials['pareto'].sum())} on the Pareto front"
        + _seeded_note(run.trials)
    )


def _seeded_note(trials: pd.DataFrame) -> str:
    """How many trials were seeded (each technique alone, enqueued right after the teacher); marked "(seeded)"."""
    n = int(trials["seeded"].isin([True]).sum()) if "seeded" in trials else 0
    return f"; {n} seeded, one technique alone tried right after the teacher, marked (seeded) in the Pareto table" if n else ""


def _log_knobs(run: RunData) -> frozenset[str]:
    return frozenset(k for k, domain in run.config.space.items() if isinstance(domain, Range) and domain.log)


def build(run: RunData) -> Report:
    """Everything the report shows, figures included."""
    rec_id = run.recommended.trial_id if run.recommended is not None else None
    trials = run.trials
    record = run.record(rec_id)
    refs = reference_usd(run)
    quality = tokens.quality_text(run.metric)
    hib = run.higher_is_better
    importance = param_importances(run.root / "optuna.db", run.study_name)
    external = run.config.search.optuna_storage
    if external and not importance.values:
        importance.note = f"the Optuna study is kept outside the run folder ({external}) and the report reads only the folder"
    thresholds = tables.threshold_frame(trials, run.max_drop)
    passed_over = {str(p["trial_id"]) for p in (run.recommended.passed_over if run.recommended is not None else [])}
    best = tables.best_per_runtime(trials, run.max_drop, passed_over) if len(tables.runtimes_searched(trials)) > 1 else {}
    files: Items = [
        ("trials.csv", "every trial, one row each: knobs, quality, measurements, instance, replicas, $/month, reasons"),
        ("pareto.csv", "the Pareto table, machine-readable"),
        ("summary.json", "baseline, recommended candidate, Pareto set, search cost, inputs"),
        ("trials/<recipe key>.json", "each finished recipe's full record, the cost model's per-instance table included"),
        ("config.yaml", "the resolved search config"),
    ]
    return Report(
        title=f"Hedgerow cost report: {run.summary.label or run.summary.task} · {run.summary.run_id}",
        verdict=verdict(run),
        headline=headline(run),
        knobs=knobs_table(run),
        pareto=tables.pareto_table(trials, rec_id, run.knobs, quality, run.priced_by_tokens),
        pareto_csv=tables.pareto_frame(trials, rec_id),
        runtimes=tables.runtimes_table(trials, best, run.records, rec_id, run.knobs) if best else None,
        runtimes_note=runtimes_note(run, best) if best else "",
        explanation=tables.explanation_table(record) if record is not None else None,
        explanation_note=(
            f"From trials/{record.recipe.key()}.json; ★ marks the chosen instance." if record is not None
            else "No stored record for the recommended trial: no per-instance explanation."
        ),
        measured_on_types=tables.node_measurements_table(run.summary),
        held_under_load=held_under_load_table(run.root),
        threshold=tables.threshold_table(trials, run.max_drop),
        heldout=tables.heldout_table(trials, run.summary, quality),
        heldout_note=str(run.summary.recommendation_note or ""),
        importance=importance,
        importance_table=tables.importance_table(importance.values),
        failures=tables.failures_table(trials, run.knobs),
        infeasible=tables.infeasible_table(trials, run.records, run.knobs, quality),
        passed_over=tables.passed_over_table(run.summary),
        fallbacks=tables.fallbacks_table(trials),
        search_cost=search_cost(run),
        inputs=inputs(run),
        formulas=tokens.FORMULAS if run.priced_by_tokens else FORMULAS,
        files=files,
        counts=counts(run),
        figures={
            "pareto": plots.pareto_plot(trials, recommended_id=rec_id, max_drop=run.max_drop, reference_usd=refs,
                                        metric=run.metric, higher_is_better=hib),
            "threshold": plots.threshold_plot(trials, max_drop=run.max_drop, thresholds=thresholds, metric=run.metric,
                                              higher_is_better=hib),
            "importance": plots.importance_plot(importance.values),
            "knobs": plots.knob_plots(
                trials, tables.varying_knobs(trials), reference_usd=refs, metric=run.metric, log_knobs=_log_knobs(run),
                higher_is_better=hib,
            ),
        },
    )
