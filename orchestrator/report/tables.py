"""The report's tables, as plain data both renderers (HTML, Markdown) write out the same way.

Each function takes stored results (the trials frame, summary dicts, a trial's
record) and returns a `Table` of already formatted cells, or a raw DataFrame
where a file is written from it (pareto.csv).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

import pandas as pd

from orchestrator.cost.model import InstanceCost, explain
from orchestrator.report import _format as f
from orchestrator.runtimes import REGISTRY
from orchestrator.report.results import DEPTH_METHOD, diagnostic_columns, pruned_rows
from orchestrator.report.recipes import SHAPE_COLUMNS, knob_applies, knob_names, recipe_text
from orchestrator.report.records import Summary, TrialRecord
from orchestrator.report.summary import rank_candidates, within_bound
from orchestrator.report import tokens
from orchestrator.report.tokens import QualityText


@dataclass
class Table:
    """Formatted cells; `highlight[i]` marks a row to emphasise (the recommended or chosen one)."""

    columns: list[str]
    rows: list[list[str]]
    highlight: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.highlight:
            self.highlight = [False] * len(self.rows)


PARETO_CSV_COLUMNS = [
    "trial_id", "recommended", "quality_metric", "quality", "quality_drop", "quality_ci95_low", "quality_ci95_high",
    "quality_drop_ci95_low", "quality_drop_ci95_high", "test_quality", "test_quality_drop", "test_quality_drop_ci95_low",
    "test_quality_drop_ci95_high", "instance_type", "replicas", "monthly_usd", "projected", "throughput_sps", "latency_p95_ms",
    "startup_seconds", "kernel_archs", "size_bytes", "peak_mem_bytes", *knob_names(), *SHAPE_COLUMNS, "recipe_key",
    "accuracy_drop", "test_accuracy",  # deprecated aliases of quality_drop and test_quality, kept for one release
]  # fmt: skip
# The cost model's wording for a CPU price projected from another architecture (orchestrator.cost.projection).
_CROSS_ARCH = re.compile(r"^cross-architecture \(measured on ([^,()]+), instance is ([^,()]+)\)")


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials only (their quality and cost are final)."""
    return trials[trials["status"] == "finished"]


def pareto_frame(trials: pd.DataFrame, recommended_id: str | None) -> pd.DataFrame:
    """The Pareto set, cheapest first, with the columns pareto.csv holds.

    An LLM's run adds its token figures (tokens.TOKEN_COLUMNS, $ per million output tokens among them) and, for
    log-perplexity, each quality and drop as perplexity and perplexity change (tokens.PERPLEXITY_CSV).
    """
    front = trials[trials["pareto"].astype(bool)].sort_values(["monthly_usd", "trial_id"], ascending=[True, True])
    token_columns = [c for c in tokens.TOKEN_COLUMNS if c in trials]
    diagnostics = [c for c in diagnostic_columns(trials) if c not in token_columns]
    columns = [c for c in PARETO_CSV_COLUMNS if c != "recommended"] + token_columns + diagnostics
    out = pd.DataFrame({c: front[c] if c in front else None for c in columns})
    if len(front) and "quality_metric" in front and tokens.is_perplexity(front["quality_metric"].iloc[0]):
        for name, values in tokens.perplexity_csv_columns(front).items():
            out.insert(out.columns.get_loc(token_columns[0]) if token_columns else len(out.columns), name, values)
    out.insert(1, "recommended", front["trial_id"] == recommended_id)
    for column in ("replicas", *(c for c in ("concurrency",) if c in out)):
        out[column] = out[column].astype("Int64")
    return out.reset_index(drop=True)


def pareto_table(
    trials: pd.DataFrame, recommended_id: str | None, knobs_shown: Sequence[str] | None = None,
    quality: QualityText | None = None, by_tokens: bool = False,
) -> Table:
    """The Pareto set for reading: recipe, quality, test quality, where it runs and what it costs.

    `quality` writes the quality figures (an LLM's as perplexity); `by_tokens` adds $ per million output tokens and
    reads throughput as one worker's output tokens/s at the concurrency served.
    """
    q = quality or QualityText()
    front = pareto_frame(trials, recommended_id)
    seeded = set(trials.loc[trials["seeded"].isin([True]), "trial_id"]) if "seeded" in trials else set()
    rows, marks = [], []
    for _, r in front.iterrows():
        rows.append([
            str(r["trial_id"]) + (" ★" if r["recommended"] else "") + (" (seeded)" if r["trial_id"] in seeded else ""), recipe_text(r, knobs_shown, with_runtime=False),
            f.runtime(r["runtime"]), q.value(r["quality"]), _val_drop(r, q), q.value(r["test_quality"]), _test_drop(r, q),
            f"{f.integer(r['replicas'])} × {r['instance_type']}", f.usd(r["monthly_usd"]),
            *([tokens.usd_per_million(r.get("usd_per_million_output_tokens"))] if by_tokens else []),
            _worker_tokens(r) if by_tokens else f.sps(r["throughput_sps"]),
            f.seconds(r["startup_seconds"]), f.size(_size(r, by_tokens)),
        ])  # fmt: skip
        marks.append(bool(r["recommended"]))
    columns = ["trial", "recipe", "runtime", f"{q.value_label} (val)", f"{q.change_label} (val) [paired 95% CI]",
               f"{q.value_label} (test)", f"{q.change_label} (test) [paired 95% CI]", "serving", "$/month",
               *(["$/M output tokens", "output tokens/s (per worker)"] if by_tokens else ["throughput"]),
               "start-up (s)", "size"]  # fmt: skip
    diagnostics = [c for c in diagnostic_columns(trials) if c in front and front[c].notna().any()]
    if diagnostics:  # what the task reports beside its metric (a text task: the labeled metrics not chosen, agreement)
        columns.insert(7, "diagnostics (val)")
        for row, (_, r) in zip(rows, front.iterrows()):
            row.insert(7, diagnostics_text(r, [c for c in diagnostics if c != r["quality_metric"]]))
    return Table(columns, rows, marks)


def diagnostics_text(row: pd.Series | dict[str, Any], names: Sequence[str]) -> str:
    """A candidate's diagnostics in one cell: agreement@10 0.8090 · fidelity 0.9940 (a metric's `_at_k` read as `@k`)."""
    parts = [f"{n.replace('_at_', '@')} {f.quality(row.get(n))}" for n in names if not f.missing(row.get(n))]
    return " · ".join(parts) or f.DASH


def _val_drop(r: pd.Series, q: QualityText) -> str:
    return q.change(r["quality_drop"], r.get("quality_drop_ci95_low"), r.get("quality_drop_ci95_high"))


def _test_drop(r: pd.Series, q: QualityText) -> str:
    return q.change(r.get("test_quality_drop"), r.get("test_quality_drop_ci95_low"), r.get("test_quality_drop_ci95_high"))


def _worker_tokens(r: pd.Series) -> str:
    """'1,783.5 tok/s at concurrency 4': one measured worker's output tokens/s at the concurrency its instance serves."""
    text = tokens.tokens_per_s(r.get("output_tokens_per_s"))
    return text if f.missing(r.get("concurrency")) else f"{text} at concurrency {f.integer(r['concurrency'])}"


def _size(r: pd.Series, by_tokens: bool) -> Any:
    """The stored size; an LLM's weight bytes where its trial recorded no size."""
    return r.get("weight_bytes") if by_tokens and f.missing(r.get("size_bytes")) else r.get("size_bytes")


def explanation_frame(record: TrialRecord) -> pd.DataFrame:
    """The cost model's per-instance explanation of a trial's record (orchestrator.cost.model.explain)."""
    return explain(record.cost)


def explanation_table(record: TrialRecord) -> Table:
    """Every catalog instance for one candidate: throughput (measured or projected), replicas, $, feasible, reason.

    An LLM priced by its tokens: concurrency, TTFT and TPOT p95, output tokens/s, requests/s, $ per million output
    tokens instead of one batch's latency (orchestrator.cost.model.TOKEN_EXPLAIN_COLUMNS).
    """
    frame = explanation_frame(record)
    if "concurrency" in frame:
        return Table(*tokens.explanation_table_rows(frame, _how, _reason))
    rows, marks = [], []
    for _, r in frame.iterrows():
        gpu = f"{int(r['accelerator_count'])} × {r['accelerator']}" if isinstance(r["accelerator"], str) else "CPU"
        rows.append([
            str(r["instance_type"]) + (" ★" if r["chosen"] else ""), gpu, f.usd_rate(r["on_demand_usd_per_hour"]),
            f.sps(r["throughput_sps"]), _how(r), f.ms(r["batch_latency_p95_ms"]),
            f.integer(r["replicas"]), f.usd(r["monthly_usd"]), f.yes_no(r["feasible"]), _reason(r),
        ])  # fmt: skip
        marks.append(bool(r["chosen"]))
    columns = ["instance", "device", "price", "throughput", "how", "batch p95", "replicas", "$/month", "feasible", "reason"]
    return Table(columns, rows, marks)


def _how(r: pd.Series) -> str:
    if f.missing(r["throughput_sps"]):
        return f.DASH
    across = cross_architecture(r["projection_method"])
    if across is not None:
        return f"projected across architectures (measured on {across[0]})"
    return "projected" if r["projected"] else "measured"


def cross_architecture(method: Any) -> tuple[str, str] | None:
    """(measured arch, instance arch) where a price was projected across CPU architectures, else None."""
    match = _CROSS_ARCH.match(str(method)) if isinstance(method, str) else None
    return (match.group(1).strip(), match.group(2).strip()) if match else None


def _reason(r: pd.Series) -> str:
    reason, method = str(r["reason"]), str(r["projection_method"])
    if f.missing(r["throughput_sps"]) or reason == method:
        return reason
    return f"{reason} (throughput: {method})"


def threshold_frame(trials: pd.DataFrame, max_drop: float) -> pd.DataFrame:
    """Per pruning method, with and without distillation: the highest prune ratio still within the bound.

    `collapse_ratio` is the lowest ratio tried above it that falls outside the bound: where quality gives way.
    """
    done = pruned_rows(finished(trials))
    done = done[~done["baseline"].astype(bool)]
    rows = []
    for (method, distilled), group in done.groupby([done["prune_method"], done["kd_steps"].fillna(0) > 0], sort=True):
        within = group[group["quality_drop"].astype(float) <= max_drop + 1e-12]
        best = within.sort_values(["prune_ratio", "quality_drop"], ascending=[False, True]).head(1)
        best_ratio = float(best["prune_ratio"].iloc[0]) if len(best) else None
        above = group[(group["quality_drop"].astype(float) > max_drop + 1e-12)]
        if best_ratio is not None:
            above = above[above["prune_ratio"].astype(float) > best_ratio]
        collapse = above.sort_values("prune_ratio").head(1)
        rows.append({
            "prune_method": method, "distilled": bool(distilled), "trials": int(len(group)),
            "within_bound": int(len(within)), "highest_ratio_within": best_ratio,
            "quality_there": float(best["quality"].iloc[0]) if len(best) else None,
            "trial_there": str(best["trial_id"].iloc[0]) if len(best) else None,
            "collapse_ratio": float(collapse["prune_ratio"].iloc[0]) if len(collapse) else None,
            "quality_at_collapse": float(collapse["quality"].iloc[0]) if len(collapse) else None,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "prune_method", "distilled", "trials", "within_bound", "highest_ratio_within", "quality_there", "trial_there",
        "collapse_ratio", "quality_at_collapse",
    ])  # fmt: skip


def _amount(method: str, value: Any) -> str:
    return f"{int(value)} blocks" if method == DEPTH_METHOD else f.percent(value)


def threshold_table(trials: pd.DataFrame, max_drop: float) -> Table:
    """threshold_frame for reading."""
    rows = []
    for _, r in threshold_frame(trials, max_drop).iterrows():
        method = str(r["prune_method"])
        there = f"{_amount(method, r['highest_ratio_within']) if not f.missing(r['highest_ratio_within']) else ''} (trial {r['trial_there']}, {f.quality(r['quality_there'])})"
        collapse = f"{_amount(method, r['collapse_ratio']) if not f.missing(r['collapse_ratio']) else ''} ({f.quality(r['quality_at_collapse'])})"
        rows.append([
            str(r["prune_method"]), "with KD" if r["distilled"] else "without KD", f"{r['within_bound']} of {r['trials']}",
            there if not f.missing(r["highest_ratio_within"]) else "none within the bound",
            collapse if not f.missing(r["collapse_ratio"]) else "none tried above it",
        ])  # fmt: skip
    return Table(["method", "distillation", "trials within bound", "highest ratio within bound", "first ratio beyond it"], rows)


def heldout_table(trials: pd.DataFrame, summary: Summary, quality: QualityText | None = None) -> Table:
    """Validation and test quality, with 95% intervals, of the recommended candidate and the baseline."""
    q = quality or QualityText()
    rows, marks = [], []
    rec, base = summary.recommended, summary.baseline
    base_test = (base.test if base is not None else None) or {}
    if rec is not None:
        r = _row(trials, rec.trial_id)
        test_drop = _get(r, "test_quality_drop")  # signed by the metric's direction, paired over the same items
        rows.append([
            f"recommended ({rec.trial_id})", q.value(rec.quality), q.interval(*(rec.val_ci95 or [None, None])),
            f.integer(_get(r, "quality_n")), q.value(rec.test_quality), q.interval(*(rec.test_ci95 or [None, None])),
            f.integer(rec.test_n),
            q.change(rec.quality_drop, _get(r, "quality_drop_ci95_low"), _get(r, "quality_drop_ci95_high")),
            q.change(test_drop, _get(r, "test_quality_drop_ci95_low"), _get(r, "test_quality_drop_ci95_high")),
        ])  # fmt: skip
        marks.append(True)
    if base is not None:
        r = _row(trials, base.trial_id)
        rows.append([
            f"baseline ({base.trial_id})", q.value(base.quality),
            q.interval(_get(r, "quality_ci95_low"), _get(r, "quality_ci95_high")), f.integer(_get(r, "quality_n")),
            q.value(base_test.get("value")), q.interval(base_test.get("ci95_low"), base_test.get("ci95_high")),
            f.integer(base_test.get("n_examples")), q.change(0.0), q.change(0.0 if base_test else None),
        ])  # fmt: skip
        marks.append(False)
    v, d = q.value_label, q.change_label
    cols = ["candidate", f"val {v}", "val 95% CI", "val n", f"test {v}", "test 95% CI", "test n",
            f"val {d} [paired 95% CI]", f"test {d} [paired 95% CI]"]  # fmt: skip
    return Table(cols, rows, marks)


def node_measurements_table(summary: Summary) -> Table | None:
    """Candidates measured again on the cluster's instance types: the projection beside the measurement, and its error."""
    rows = summary.node_measurements
    if not rows:
        return None
    out = []
    for r in rows:
        error = r.get("projection_error")
        out.append([
            str(r["trial_id"]), str(r["instance_type"]), f.sps(r.get("projected_throughput_sps")),
            f.sps(r.get("measured_throughput_sps")), f.DASH if f.missing(error) else f"{error:+.1%}",
            f.usd(r.get("projected_monthly_usd")), f.usd(r.get("measured_monthly_usd")), str(r.get("measured_reason") or ""),
        ])  # fmt: skip
    columns = ["trial", "instance", "projected throughput", "measured there", "projection error",
               "projected $/month", "measured $/month", "how it was measured, or why not"]  # fmt: skip
    return Table(columns, out)


def failures_table(trials: pd.DataFrame, knobs_shown: Sequence[str] | None = None) -> Table:
    """Trials that did not finish (failed, or stopped early by the scheduler), with their reasons."""
    bad = trials[trials["status"] != "finished"].sort_values("trial_id")
    rows = [
        [str(r["trial_id"]), str(r["status"]), recipe_text(r, knobs_shown),
         f.short_error(r.get("error"))]
        for _, r in bad.iterrows()
    ]  # fmt: skip
    return Table(["trial", "status", "recipe", "reason"], rows)


def infeasible_table(
    trials: pd.DataFrame, records: dict[str, TrialRecord], knobs_shown: Sequence[str] | None = None,
    quality: QualityText | None = None,
) -> Table:
    """Finished trials no instance can serve within the SLO and memory, with the cheapest instance's reason."""
    q = quality or QualityText()
    bad = finished(trials)
    bad = bad[~bad["feasible"].astype(bool)].sort_values("trial_id")
    rows = []
    for _, r in bad.iterrows():
        ref = cheapest_priced(records.get(r.get("recipe_key")) if isinstance(r.get("recipe_key"), str) else None)
        if ref is None:
            where, why = f.DASH, str(r.get("cost_reason") or "no instance could be priced")
        else:
            where, why = f"{f.integer(ref.replicas)} × {ref.instance_type} at {f.usd(ref.monthly_usd)}", ref.reason
        rows.append([str(r["trial_id"]) + (" (baseline)" if r["baseline"] else ""), recipe_text(r, knobs_shown),
                     q.value(r["quality"]), where, why])  # fmt: skip
    return Table(["trial", "recipe", f"{q.value_label} (val)", "cheapest instance, SLO aside", "why it is infeasible there"], rows)


def cheapest_priced(record: TrialRecord | None) -> InstanceCost | None:
    """The cheapest instance a record's cost model could put a price on, feasible or not."""
    if record is None:
        return None
    priced = [c for c in record.cost.per_instance if c.monthly_usd is not None]
    return min(priced, key=lambda c: (c.monthly_usd, c.instance_type)) if priced else None


def passed_over_table(summary: Summary) -> Table:
    """Cheaper candidates the held-out test check set aside."""
    passed = summary.recommended.passed_over if summary.recommended is not None else []
    return Table(["trial", "$/month", "reason"], [[str(p["trial_id"]), f.usd(p.get("monthly_usd")), str(p["reason"])] for p in passed])


def fallbacks_table(trials: pd.DataFrame) -> Table:
    """Trials where a compression technique fell back to something else on this device."""
    done = trials[trials["fallbacks"].fillna("").astype(str).str.strip() != ""].sort_values("trial_id")
    return Table(["trial", "fallbacks"], [[str(r["trial_id"]), str(r["fallbacks"])] for _, r in done.iterrows()])


def varying_knobs(trials: pd.DataFrame) -> list[str]:
    """Knobs that take more than one value among finished trials where they apply, in Recipe order."""
    done = finished(trials)
    return [k for k in knob_names() if k in done and done.loc[knob_applies(done, k), k].dropna().astype(str).nunique() > 1]


def importance_table(importances: dict[str, dict[str, float]]) -> Table:
    """Knob importance for quality and for monthly $, most important (for $) first."""
    usd, qual = importances.get("monthly_usd", {}), importances.get("quality", {})
    names = sorted(set(usd) | set(qual), key=lambda k: (-usd.get(k, 0.0), -qual.get(k, 0.0), k))
    return Table(["knob", "importance for monthly $", "importance for quality"],
                 [[k, f.number(usd.get(k), 3), f.number(qual.get(k), 3)] for k in names])  # fmt: skip


def _row(trials: pd.DataFrame, trial_id: str) -> pd.Series | None:
    match = trials[trials["trial_id"] == str(trial_id)]
    return match.iloc[0] if len(match) else None


def _get(row: pd.Series | None, key: str) -> Any:
    return None if row is None or key not in row else row[key]


RUNTIME_ORDER = REGISTRY.names


def runtimes_searched(trials: pd.DataFrame) -> list[str]:
    """The runtimes the run's trials used: the registered ones first, in registration order, any other after by name."""
    names = set(trials["runtime"].dropna().astype(str)) if "runtime" in trials else set()
    rank = {name: i for i, name in enumerate(RUNTIME_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(RUNTIME_ORDER)), n))


def best_per_runtime(trials: pd.DataFrame, max_drop: float, skip_ids: set[str]) -> dict[str, pd.Series | None]:
    """Each runtime's cheapest feasible candidate within the bound, ranked as the recommendation ranks them.

    `skip_ids` are candidates the held-out test check passed over; a runtime with none left maps to None.
    """
    eligible = trials[within_bound(trials, max_drop) & ~trials["trial_id"].astype(str).isin(skip_ids)]
    ranked = rank_candidates(eligible)
    best = {}
    for name in runtimes_searched(trials):
        mine = ranked[ranked["runtime"].astype(str) == name]
        best[name] = mine.iloc[0] if len(mine) else None
    return best


def chosen_entry(record: TrialRecord | None, instance_type: Any) -> InstanceCost | None:
    """A record's per-instance cost entry for one instance type, or None."""
    if record is None or f.missing(instance_type):
        return None
    return next((c for c in record.cost.per_instance if c.instance_type == instance_type), None)


def instance_arch(record: TrialRecord | None, instance_type: Any) -> tuple[str | None, str | None]:
    """(the CPU architecture of a candidate's instance, the architecture measured on where it was projected across).

    Read from the stored cost entry: a cross-architecture projection names both; otherwise a CPU
    instance shares the measured device's architecture. (None, None) for GPU instances or no record.
    """
    entry = chosen_entry(record, instance_type)
    if record is None or entry is None or entry.accelerator:
        return None, None
    across = cross_architecture(entry.projection_method)
    if across is not None:
        return across[1], across[0]
    return record.metrics.get("device", {}).get("arch"), None


def unpriced_for_kernels(record: TrialRecord | None) -> list[str]:
    """Instance types a candidate was not priced on because its kernels need another CPU architecture."""
    entries = record.cost.per_instance if record is not None else []
    return [c.instance_type for c in entries if c.projection_method.startswith("none: needs")]


def serving_text(row: pd.Series | dict[str, Any], record: TrialRecord | None) -> str:
    """'3 × c7g.xlarge', and where its price was projected across architectures, which ones."""
    text = f"{f.integer(row['replicas'])} × {row['instance_type']}"
    arch, measured_on = instance_arch(record, row["instance_type"])
    if measured_on is not None:
        text += f" ({arch}; projected across architectures, measured on {measured_on})"
    return text


def runtimes_table(
    trials: pd.DataFrame, best: dict[str, pd.Series | None], records: dict[str, TrialRecord], recommended_id: str | None,
    knobs_shown: Sequence[str] | None = None,
) -> Table:
    """For each runtime searched: its trials and its cheapest feasible candidate within the bound."""
    rows, marks = [], []
    for name, r in best.items():
        group = trials[trials["runtime"].astype(str) == name]
        counted = f"{int((group['status'] == 'finished').sum())} of {len(group)}"
        label = f"{name} ({f.runtime(name)})"
        if r is None:
            rows.append([label, counted, "none within the bound", *[f.DASH] * 6])
            marks.append(False)
            continue
        record = records.get(r["recipe_key"]) if isinstance(r.get("recipe_key"), str) else None
        recommended = str(r["trial_id"]) == str(recommended_id)
        rows.append([
            label, counted, str(r["trial_id"]) + (" ★" if recommended else ""),
            recipe_text(r, knobs_shown, with_runtime=False), f.archs(r.get("kernel_archs")),
            f.sps(r["throughput_sps"]), f.seconds(r.get("startup_seconds")), serving_text(r, record), f.usd(r["monthly_usd"]),
        ])  # fmt: skip
        marks.append(recommended)
    columns = ["runtime", "trials finished", "cheapest within bound", "recipe", "kernels run on", "throughput",
               "start-up (s)", "serving", "$/month"]  # fmt: skip
    return Table(columns, rows, marks)
