"""The Pareto front of quality (higher is better) against monthly $ (lower is better)."""

from __future__ import annotations

import pandas as pd


def pareto_mask(quality: pd.Series, cost: pd.Series) -> pd.Series:
    """True where no other point is at least as good on both axes and strictly better on one."""
    flags = []
    q, c = quality.to_numpy(dtype=float), cost.to_numpy(dtype=float)
    for i in range(len(q)):
        dominated = ((q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))).any()
        flags.append(not dominated)
    return pd.Series(flags, index=quality.index, dtype=bool)


def mark_pareto(frame: pd.DataFrame) -> pd.Series:
    """Pareto flags over finished, feasible trials (others are never on the front)."""
    eligible = (frame["status"] == "finished") & frame["feasible"].fillna(False).astype(bool) & frame["monthly_usd"].notna()
    flags = pd.Series(False, index=frame.index, dtype=bool)
    if eligible.any():
        sub = frame[eligible]
        flags[eligible] = pareto_mask(sub["quality"], sub["monthly_usd"])
    return flags
