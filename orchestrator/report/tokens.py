"""How the report reads a decoder LLM's run: quality as perplexity, money per million output tokens.

An LLM's quality is `log_perplexity` (nats per token, lower is better); a reader thinks in perplexity =
exp(log_perplexity), and in a drop d (candidate − teacher, nats) as a perplexity change of exp(d) − 1. The
objective's bound `max_perplexity_increase` (+5%) is `max_quality_drop` ln(1.05). Its cost comes from the token
cost model (orchestrator/cost/tokens.py): per instance, the concurrency served, TTFT and TPOT p95, output tokens/s,
requests/s and $ per million output tokens. Everything here formats stored figures; nothing is measured again.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from orchestrator.report import _format as f
from orchestrator.report.records import TrialRecord

LOG_PERPLEXITY = "log_perplexity"
# What an LLM trial reports beside the common columns (orchestrator/search/llm_trial.token_columns).
TOKEN_COLUMNS = [
    "concurrency", "output_tokens_per_s", "decode_tokens_per_s_c1", "ttft_p95_ms", "tpot_p95_ms",
    "prefill_tokens_per_s", "weight_bytes", "kv_bytes_per_token", "usd_per_million_output_tokens",
]  # fmt: skip
# pareto.csv's perplexity columns: exp of the quality, exp(drop) − 1 of each drop and its paired interval ends.
PERPLEXITY_CSV = {
    "val_perplexity": "quality", "perplexity_change": "quality_drop",
    "perplexity_change_ci95_low": "quality_drop_ci95_low", "perplexity_change_ci95_high": "quality_drop_ci95_high",
    "test_perplexity": "test_quality", "test_perplexity_change": "test_quality_drop",
    "test_perplexity_change_ci95_low": "test_quality_drop_ci95_low",
    "test_perplexity_change_ci95_high": "test_quality_drop_ci95_high",
}  # fmt: skip
# A decoder's depth and widths are recorded in the encoder-named shape columns (compress/transformer_prune).
SHAPE_LABELS = {
    "encoder_layers": "layers", "encoder_heads_per_layer": "attention heads per layer",
    "encoder_ffn_per_layer": "FFN width per layer",
}  # fmt: skip


def is_perplexity(metric: Any) -> bool:
    """Whether a run's quality is log-perplexity (shown as perplexity)."""
    return str(metric) == LOG_PERPLEXITY


def priced_by_tokens(trials: pd.DataFrame, records: Mapping[str, TrialRecord], traffic_tokens: Any = None) -> bool:
    """Whether a run's candidates were priced by the token cost model: token traffic, token columns or token costs."""
    if traffic_tokens is not None or "usd_per_million_output_tokens" in trials or "output_tokens_per_s" in trials:
        return True
    return any(c.concurrency is not None for r in records.values() for c in r.cost.per_instance)


def perplexity(log_perplexity: Any) -> float | None:
    """exp(log-perplexity); None where there is no figure."""
    return math.exp(float(log_perplexity)) if f.finite(log_perplexity) else None


def change(drop: Any) -> float | None:
    """A log-perplexity drop (candidate − teacher, nats) as a relative perplexity change: exp(drop) − 1."""
    return math.expm1(float(drop)) if f.finite(drop) else None


def percent_change(value: Any) -> str:
    """+3.20% (a relative change, signed, two decimals)."""
    return f.DASH if not f.finite(value) else f"{float(value) * 100:+.2f}%"


def usd_per_million(value: Any) -> str:
    """$0.0232 per million output tokens, written as $0.0232 (the cost model keeps a hundredth of a cent)."""
    return f.DASH if not f.finite(value) else f"${float(value):,.4f}"


def tokens_per_s(value: Any) -> str:
    """Output tokens/s, one decimal."""
    return f.DASH if not f.finite(value) else f"{float(value):,.1f} tok/s"


def rate(value: Any) -> str:
    """Requests/s, 4 significant digits."""
    return f.DASH if not f.finite(value) else f"{float(value):.4g} rps"


class QualityText:
    """How quality figures read in tables and sentences: the metric's own values (any task but an LLM)."""

    value_label = "quality"
    change_label = "drop"

    def value(self, v: Any) -> str:
        """A quality figure."""
        return f.quality(v)

    def interval(self, low: Any, high: Any) -> str:
        """A quality's 95% interval."""
        return f.ci(low, high)

    def change(self, drop: Any, low: Any = None, high: Any = None) -> str:
        """A drop against the baseline, with its paired 95% interval where one was measured."""
        return f.drop_ci(drop, low, high)


class PerplexityText(QualityText):
    """Log-perplexity read as perplexity: 303.25 (log 5.7146); a drop as +3.20% [+1.02%, +5.41%] (Δ … nats)."""

    value_label = "perplexity"
    change_label = "perplexity change"

    def value(self, v: Any) -> str:
        """'303.25 (log 5.7146)': perplexity = exp(log-perplexity), beside the log it comes from."""
        ppl = perplexity(v)
        return f.DASH if ppl is None else f"{ppl:,.2f} (log {float(v):.4f})"

    def interval(self, low: Any, high: Any) -> str:
        """A log-perplexity interval as perplexity: [exp(low), exp(high)] (exp keeps the order)."""
        lo, hi = perplexity(low), perplexity(high)
        return f.DASH if lo is None or hi is None else f"[{lo:,.2f}, {hi:,.2f}]"

    def change(self, drop: Any, low: Any = None, high: Any = None) -> str:
        """'+3.20% [+1.02%, +5.41%] (Δ +0.0315 [+0.0101, +0.0527] nats)': exp(Δ) − 1 of the drop and its interval."""
        if not f.finite(drop):
            return f.DASH
        text, nats = percent_change(change(drop)), f"{float(drop):+.4f}"
        if f.finite(low) and f.finite(high):
            text += f" [{percent_change(change(low))}, {percent_change(change(high))}]"
            nats += f" [{float(low):+.4f}, {float(high):+.4f}]"
        return f"{text} (Δ {nats} nats)"


def quality_text(metric: Any) -> QualityText:
    """The formatter for a run's metric."""
    return PerplexityText() if is_perplexity(metric) else QualityText()


def bound_text(max_drop: float, max_increase: Any = None) -> str:
    """The quality bound of a log-perplexity run: '+5.00% (max_quality_drop ln(1.05) = 0.0488 nats per token)'."""
    increase = float(max_increase) if f.finite(max_increase) else math.expm1(max_drop)
    return f"{percent_change(increase)} (max_quality_drop ln({1 + increase:.6g}) = {max_drop:.4f} nats per token)"


def fill_token_columns(trials: pd.DataFrame, records: Mapping[str, TrialRecord]) -> pd.DataFrame:
    """trials.csv with its token columns completed from each trial's record, for a folder written before trials.csv
    kept them (the record's row and its cost always did). A run priced by samples is returned as it is."""
    if not any(c.concurrency is not None for r in records.values() for c in r.cost.per_instance):
        return trials
    out = trials.copy()
    for column in TOKEN_COLUMNS:
        stored = out[column] if column in out else pd.Series(None, index=out.index, dtype=object)
        found = out["recipe_key"].map(lambda key: _from_record(records.get(key) if isinstance(key, str) else None, column))
        out[column] = stored.where(stored.notna(), found).astype(float)
    return out


def _from_record(record: TrialRecord | None, column: str) -> Any:
    """A token figure from a trial's record: its row, else the chosen instance's cost entry."""
    if record is None:
        return None
    value = record.row.get(column)
    if f.missing(value) and column in ("concurrency", "usd_per_million_output_tokens"):
        value = getattr(record.cost, column)
    return None if f.missing(value) else value


def explanation_table_rows(frame: pd.DataFrame, how: Any, reason: Any) -> tuple[list[str], list[list[str]], list[bool]]:
    """The token cost model's per-instance table (orchestrator.cost.model.TOKEN_EXPLAIN_COLUMNS) for reading.

    `how(row)` and `reason(row)` write the projection and the reason as the request table writes them.
    """
    rows, marks = [], []
    for _, r in frame.iterrows():
        gpu = f"{int(r['accelerator_count'])} × {r['accelerator']}" if isinstance(r["accelerator"], str) else "CPU"
        rows.append([
            str(r["instance_type"]) + (" ★" if r["chosen"] else ""), gpu, f.usd_rate(r["on_demand_usd_per_hour"]),
            f.integer(r["concurrency"]), f.ms(r["ttft_p95_ms"]), f.ms(r["tpot_p95_ms"]),
            tokens_per_s(r["output_tokens_per_s"]), rate(r["throughput_sps"]), how(r), f.integer(r["replicas"]),
            f.usd(r["monthly_usd"]), usd_per_million(r["usd_per_million_output_tokens"]), f.yes_no(r["feasible"]),
            reason(r),
        ])  # fmt: skip
        marks.append(bool(r["chosen"]))
    columns = ["instance", "device", "price", "concurrency", "TTFT p95", "TPOT p95", "output tokens/s", "requests/s",
               "how", "replicas", "$/month", "$/M output tokens", "feasible", "reason"]  # fmt: skip
    return columns, rows, marks


def perplexity_csv_columns(front: pd.DataFrame) -> dict[str, pd.Series]:
    """pareto.csv's perplexity columns of a log-perplexity run, from its quality columns."""
    out = {}
    for name, source in PERPLEXITY_CSV.items():
        values = front[source] if source in front else pd.Series(None, index=front.index, dtype=float)
        convert = perplexity if name.endswith("perplexity") else change
        out[name] = values.map(convert).astype(float)
    return out


FORMULAS = [
    "perplexity = exp(log_perplexity) (nats per token); perplexity change = exp(candidate − baseline log_perplexity) − 1, "
    "its paired 95% interval converted the same way: [exp(low) − 1, exp(high) − 1]",
    "within the bound: log_perplexity drop ≤ max_quality_drop = ln(1 + max_perplexity_increase)",
    "throughput_sps (trials.csv) = one worker's output tokens/s at the chosen concurrency / output tokens per request",
    "per instance: concurrency = of the measured concurrencies meeting the TTFT and TPOT p95 SLOs and memory, the one "
    "with the most output tokens/s; output tokens/s = per worker × workers; requests/s = output tokens/s / output tokens",
    "replicas = max(min_replicas, ceil(peak_rps × output_tokens / (output tokens/s × target_utilization)))",
    "monthly $ = replicas × on-demand $/hour × hours_per_month (with an hourly profile: the sum over 24 hours of "
    "that hour's replicas × $/hour × hours_per_month / 24)",
    "$ per million output tokens = on-demand $/hour / (output tokens/s × target_utilization × 3600) × 1e6",
    "feasible = TTFT p95 ≤ SLO and TPOT p95 ≤ SLO and max(peak memory, weights + KV bytes/token × (prompt + output) "
    "× concurrency) ≤ memory × (1 − memory headroom)",
    "savings = baseline $/month − recommended $/month; ratio = savings / baseline $/month; "
    "per token: 1 − recommended $/M output tokens / baseline $/M output tokens",
    "payback days = search $ / (savings $/month / days per month)",
]
