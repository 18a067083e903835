"""The Pareto front of quality (better is kept, whichever way the metric points) against monthly $ (lower is better)."""

from __future__ import annotations

import pandas as pd

# Metrics where a lower value is better, for a frame without drops to read the direction from.
LOWER_IS_BETTER = frozenset({"log_perplexity"})


def pareto_mask(quality: pd.Series, cost: pd.Series) -> pd.Series:
    """True where no other point is at least as good on both axes and strictly better on one (higher quality is better)."""
    flags = []
    q, c = quality.to_numpy(dtype=float), cost.to_numpy(dtype=float)
    for i in range(len(q)):
        dominated = ((q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))).any()
        flags.append(not dominated)
    return pd.Series(flags, index=quality.index, dtype=bool)


def goodness(frame: pd.DataFrame) -> pd.Series:
    """Quality as 'higher is better': minus the drop against the teacher (signed by the metric's direction) where every
    row has one, else the quality, negated for a metric where lower is better (log-perplexity)."""
    drops = frame["quality_drop"] if "quality_drop" in frame else None
    if drops is not None and drops.notna().all():
        return -drops.astype(float)
    lower = frame["quality_metric"].astype(str).isin(LOWER_IS_BETTER) if "quality_metric" in frame else False
    quality = frame["quality"].astype(float)
    return quality.where(~lower, -quality) if isinstance(lower, pd.Series) else quality


def mark_pareto(frame: pd.DataFrame) -> pd.Series:
    """Pareto flags over finished, feasible trials (others are never on the front)."""
    eligible = (frame["status"] == "finished") & frame["feasible"].fillna(False).astype(bool) & frame["monthly_usd"].notna()
    flags = pd.Series(False, index=frame.index, dtype=bool)
    if eligible.any():
        sub = frame[eligible]
        flags[eligible] = pareto_mask(goodness(sub), sub["monthly_usd"])
    return flags
