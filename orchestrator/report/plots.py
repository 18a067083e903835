"""The report's figures as SVG text: matplotlib's object API (no pyplot, no GUI backend), deterministic bytes.

Every function takes plain DataFrames / dicts and returns the SVG document as a
string (or None where there is nothing to draw). The SVG is written with a fixed
hash salt and no date, so building a report twice gives the same bytes.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from orchestrator.report import _format as fmt
from orchestrator.report.recipes import knob_applies
from orchestrator.report.results import pruned_rows

STYLE = {
    "svg.hashsalt": "hedgerow-report",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
COLORS = {"front": "#1f6fb4", "feasible": "#9aa5b1", "infeasible": "#d62728", "stopped": "#ff7f0e",
          "failed": "#7f0000", "recommended": "#f2b701", "baseline": "#222222", "bound": "#2ca02c"}  # fmt: skip
METHOD_COLORS = ["#1f6fb4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]


def svg_text(fig: Figure) -> str:
    """The figure as an SVG document; the same figure gives the same bytes."""
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "hedgerow"}, bbox_inches="tight")
    return buf.getvalue()


def data_uri(svg: str) -> str:
    """An SVG document as a data: URI for an <img> tag (self-contained, no external fetch)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _t(text: str) -> str:
    """Text for matplotlib: a literal $ (mathtext would read a pair of them as a formula)."""
    return text.replace("$", r"\$")


def _dollar_axis(axis: Any) -> None:
    """A log-scale $ axis with ticks at 1, 2, 5 × 10^k written as $1,000."""
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _t(f"${v:,.0f}")))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), dpi=100)


def pareto_plot(
    trials: pd.DataFrame,
    *,
    recommended_id: str | None,
    max_drop: float,
    reference_usd: dict[str, float] | None = None,
    metric: str = "quality",
    higher_is_better: bool = True,
) -> str:
    """Quality against monthly $ (log x) for every trial: the front highlighted, the baseline and the bound marked.

    Infeasible trials sit at the $ of their cheapest instance with the SLO set aside
    (`reference_usd`, by trial id) as red crosses; trials with no $ at all (failed,
    stopped early, unpriceable) are counted in a strip on the right. Where quality
    spans far more than the bound, a lower panel zooms in on the bound. A metric where lower is better
    (log-perplexity) is drawn on an inverted axis, so better is up either way.
    """
    sign = 1 if higher_is_better else -1
    reference_usd = reference_usd or {}
    done = trials[trials["status"] == "finished"]
    base = done[done["baseline"].astype(bool)]
    bq = float(base["quality"].iloc[0]) if len(base) else None
    qualities = done["quality"].dropna()
    worst = float(qualities.min() if higher_is_better else qualities.max()) if len(qualities) else None
    zoom = bq is not None and max_drop > 0 and worst is not None and sign * (bq - worst) > 6 * max_drop
    with matplotlib.rc_context(STYLE):
        fig = _figure(8.0, 7.0 if zoom else 4.8)
        grid = fig.add_gridspec(2 if zoom else 1, 2, width_ratios=[11, 1], height_ratios=[3, 2] if zoom else None,
                                wspace=0.04, hspace=0.3)  # fmt: skip
        ax, strip = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        _draw_trials(ax, done, recommended_id, max_drop, reference_usd, metric, bq, sign)
        ax.set_title("Quality against monthly spend, every trial")
        _no_cost_strip(strip, trials, set(reference_usd), ax)
        handles, labels = ax.get_legend_handles_labels()
        extra = _strip_handles(trials, set(reference_usd))
        ax.legend(handles + extra[0], labels + extra[1], loc="lower right", fontsize=7, framealpha=0.9)
        if zoom:
            near = fig.add_subplot(grid[1, 0], sharex=ax)
            _draw_trials(near, done, recommended_id, max_drop, reference_usd, metric, bq, sign)
            best = float(qualities.max() if higher_is_better else qualities.min())
            top = (max(best, bq) + max_drop) if higher_is_better else (min(best, bq) - max_drop)
            near.set_ylim(bq - 4 * max_drop, top) if higher_is_better else near.set_ylim(bq + 4 * max_drop, top)
            near.set_title(f"Zoom: within {4 * max_drop:g} of the baseline", fontsize=9)
            ax.set_xlabel("")
        return svg_text(fig)


def _draw_trials(
    ax: Any, done: pd.DataFrame, recommended_id: str | None, max_drop: float, reference_usd: dict[str, float],
    metric: str, bq: float | None, sign: int = 1,
) -> None:  # fmt: skip
    feasible = done[done["feasible"].astype(bool) & done["monthly_usd"].notna()]
    front = feasible[feasible["pareto"].astype(bool)].sort_values(["monthly_usd", "trial_id"])
    rest = feasible[~feasible["pareto"].astype(bool)]
    ax.scatter(rest["monthly_usd"], rest["quality"], s=28, color=COLORS["feasible"], label=f"feasible ({len(rest)})", zorder=2)
    ax.step(front["monthly_usd"], front["quality"], where="post", color=COLORS["front"], alpha=0.5, zorder=2)
    ax.scatter(front["monthly_usd"], front["quality"], s=40, color=COLORS["front"], label=f"Pareto front ({len(front)})", zorder=3)
    infeasible = done[~done["feasible"].astype(bool)]
    placed = infeasible[infeasible["trial_id"].isin(list(reference_usd))]
    xs = [reference_usd[t] for t in placed["trial_id"]]
    ax.scatter(xs, placed["quality"], marker="x", s=36, color=COLORS["infeasible"], zorder=3,
               label=_t(f"infeasible, at its cheapest instance's $ ({len(placed)})"))  # fmt: skip
    rec = done[done["trial_id"] == recommended_id]
    if len(rec):
        ax.scatter(rec["monthly_usd"], rec["quality"], marker="*", s=260, color=COLORS["recommended"],
                   edgecolor="black", linewidth=0.6, zorder=5, label=f"recommended ({recommended_id})")  # fmt: skip
    base = done[done["baseline"].astype(bool)]
    if bq is not None:
        ax.axhline(bq, color=COLORS["baseline"], linestyle="--", linewidth=0.8, label=f"baseline {metric} {bq:.4f}")
        ax.axhline(bq - sign * max_drop, color=COLORS["bound"], linestyle=":", linewidth=1.0,
                   label=f"quality bound ({'−' if sign > 0 else '+'}{max_drop:g})")
        b = base.iloc[0]
        bx = b["monthly_usd"] if fmt.finite(b["monthly_usd"]) and bool(b["feasible"]) else reference_usd.get(b["trial_id"])
        if bx is not None:
            ax.scatter([bx], [bq], marker="D", s=46, facecolor="none", edgecolor=COLORS["baseline"], zorder=4,
                       label="baseline" + ("" if bool(b["feasible"]) else " (infeasible)"))  # fmt: skip
    if len(feasible) or xs:
        ax.set_xscale("log")
        _dollar_axis(ax.xaxis)
    ax.set_xlabel(_t("monthly $ (log scale)"))
    ax.set_ylabel(f"{metric} (validation)" + ("" if sign > 0 else ", lower is better: axis inverted"))
    if sign < 0 and not ax.yaxis_inverted():
        ax.invert_yaxis()


def _without_cost(trials: pd.DataFrame, placed: set[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    stopped = trials[trials["status"] == "stopped"]
    failed = trials[trials["status"] == "failed"]
    done = trials[trials["status"] == "finished"]
    unpriced = done[~done["feasible"].astype(bool) & ~done["trial_id"].isin(list(placed))]
    return stopped, failed, unpriced


def _no_cost_strip(strip: Any, trials: pd.DataFrame, placed: set[str], ax: Any) -> None:
    stopped, failed, unpriced = _without_cost(trials, placed)
    strip.sharey(ax)
    strip.tick_params(labelleft=False, bottom=False, labelbottom=False)
    strip.set_xlim(-1, 1)
    strip.set_title(_t("no $"), fontsize=8)
    for frame, marker, color in ((stopped, "^", COLORS["stopped"]), (unpriced, "x", COLORS["infeasible"])):
        q = frame["quality"].dropna()
        xs = np.linspace(-0.5, 0.5, len(q)) if len(q) > 1 else [0] * len(q)
        if marker == "^":
            strip.scatter(xs, q, marker=marker, s=30, facecolor="none", edgecolor=color)
        else:
            strip.scatter(xs, q, marker=marker, s=30, color=color)
    if len(failed):
        strip.text(0, 0.02, f"{len(failed)}\nfailed", transform=strip.get_xaxis_transform(), ha="center", va="bottom",
                   color=COLORS["failed"], fontsize=8)  # fmt: skip


def _strip_handles(trials: pd.DataFrame, placed: set[str]) -> tuple[list, list]:
    stopped, failed, unpriced = _without_cost(trials, placed)
    handles, labels = [], []
    if len(stopped):
        handles.append(Line2D([], [], marker="^", linestyle="", markerfacecolor="none", color=COLORS["stopped"]))
        labels.append(_t(f"stopped early, no $ ({len(stopped)})"))
    if len(unpriced):
        handles.append(Line2D([], [], marker="x", linestyle="", color=COLORS["infeasible"]))
        labels.append(f"no instance could price it ({len(unpriced)})")
    if len(failed):
        handles.append(Line2D([], [], marker="s", linestyle="", color=COLORS["failed"]))
        labels.append(_t(f"failed: no quality, no $ ({len(failed)})"))
    return handles, labels


def threshold_plot(
    trials: pd.DataFrame, *, max_drop: float, thresholds: pd.DataFrame, metric: str = "quality",
    higher_is_better: bool = True,
) -> str | None:
    """Quality against prune ratio per pruning method, with (filled) and without (hollow) distillation.

    The highest ratio within the quality bound of each method × distillation is marked
    (`thresholds` is tables.threshold_frame). None where no pruned trial finished.
    """
    done = pruned_rows(trials[trials["status"] == "finished"])
    if done.empty:
        return None
    with matplotlib.rc_context(STYLE):
        fig = _figure(8.0, 4.4)
        ax = fig.add_subplot()
        methods = sorted(done["prune_method"].unique())
        for i, method in enumerate(methods):
            color = METHOD_COLORS[i % len(METHOD_COLORS)]
            for distilled in (False, True):
                g = done[(done["prune_method"] == method) & ((done["kd_steps"].fillna(0) > 0) == distilled)]
                if g.empty:
                    continue
                g = g.sort_values("prune_ratio")
                ax.plot(g["prune_ratio"], g["quality"], linestyle="-" if distilled else "--", color=color, alpha=0.45)
                ax.scatter(g["prune_ratio"], g["quality"], s=32, color=color, facecolor=color if distilled else "none",
                           label=f"{method}, {'with' if distilled else 'without'} KD ({len(g)})", zorder=3)  # fmt: skip
                mark = thresholds[(thresholds["prune_method"] == method) & (thresholds["distilled"] == distilled)]
                if len(mark) and fmt.finite(mark["highest_ratio_within"].iloc[0]):
                    x, y = float(mark["highest_ratio_within"].iloc[0]), float(mark["quality_there"].iloc[0])
                    ax.axvline(x, color=color, linestyle="-" if distilled else "--", linewidth=0.7, alpha=0.6)
                    ax.annotate(f"{x:.0%}", (x, y), textcoords="offset points", xytext=(4, -12), color=color, fontsize=8)
        base = trials[(trials["status"] == "finished") & trials["baseline"].astype(bool)]
        if len(base):
            bq = float(base["quality"].iloc[0])
            ax.axhline(bq, color=COLORS["baseline"], linestyle="--", linewidth=0.8, label=f"baseline {bq:.4f}")
            sign = 1 if higher_is_better else -1
            ax.axhline(bq - sign * max_drop, color=COLORS["bound"], linestyle=":", linewidth=1.0,
                       label=f"bound ({'−' if sign > 0 else '+'}{max_drop:g})")
        if not higher_is_better:
            ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_xlabel("prune ratio (vertical lines: highest ratio within the bound)")
        ax.set_ylabel(f"{metric} (validation)")
        ax.set_title("Where quality gives way: quality against prune ratio")
        ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
        return svg_text(fig)


def knob_plots(
    trials: pd.DataFrame,
    knobs: list[str],
    *,
    reference_usd: dict[str, float] | None = None,
    metric: str = "quality",
    log_knobs: frozenset[str] = frozenset(),
    higher_is_better: bool = True,
) -> str | None:
    """Quality (upper) and monthly $ (lower, log) against each knob, over finished trials where the knob applies.

    Knobs in `log_knobs` (sampled on a log scale) get a log x axis.
    """
    done = trials[trials["status"] == "finished"]
    knobs = [k for k in knobs if k in done]
    if done.empty or not knobs:
        return None
    reference_usd = reference_usd or {}
    cols = min(4, len(knobs))
    blocks = -(-len(knobs) // cols)
    with matplotlib.rc_context(STYLE):
        fig = _figure(2.2 * cols + 0.8, 3.5 * blocks + 0.4)
        grid = fig.add_gridspec(blocks, cols, hspace=0.45, wspace=0.38)
        feasible = done["feasible"].astype(bool) & done["monthly_usd"].notna()
        usd = done["monthly_usd"].where(feasible, done["trial_id"].map(reference_usd))
        for i, knob in enumerate(knobs):
            block, col = divmod(i, cols)
            cell = grid[block, col].subgridspec(2, 1, hspace=0.08)
            top = fig.add_subplot(cell[0])
            bottom = fig.add_subplot(cell[1], sharex=top)
            mask = knob_applies(done, knob)
            x, ticks = _positions(done.loc[mask, knob])
            ok = feasible[mask].to_numpy()
            for ax, y in ((top, done.loc[mask, "quality"]), (bottom, usd[mask])):
                ax.scatter(x[ok], y[ok], s=16, color=COLORS["front"])
                ax.scatter(x[~ok], y[~ok], s=16, marker="x", color=COLORS["infeasible"])
            if ticks is not None:
                bottom.set_xticks(range(len(ticks)), ticks, fontsize=7, rotation=30 if len(ticks) > 3 else 0)
                bottom.set_xlim(-0.5, len(ticks) - 0.5)
            elif knob in log_knobs:
                bottom.set_xscale("log")
            top.tick_params(labelbottom=False)
            if not higher_is_better:
                top.invert_yaxis()
            top.set_title(knob, fontsize=9)
            if usd[mask].notna().any():
                bottom.set_yscale("log")
                _dollar_axis(bottom.yaxis)
            if col == 0:
                top.set_ylabel(metric)
                bottom.set_ylabel(_t("monthly $"))
        fig.suptitle(_t("Quality (upper) and monthly $ (lower, log) against each knob, where the knob applies; "
                        "x: infeasible, at its cheapest instance's $"), fontsize=9)
        return svg_text(fig)


def _positions(values: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    """Float knobs as they are; categorical ones (strings, bools, integers with few values) as evenly spaced categories."""
    clean = values.dropna()
    is_float = pd.api.types.is_float_dtype(values)
    is_int = pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if is_float or (is_int and clean.nunique() > 6):
        return values.astype(float).to_numpy(), None
    cats = sorted((v.item() if hasattr(v, "item") else v for v in clean.unique()), key=lambda v: (str(type(v)), v))
    index = {v: i for i, v in enumerate(cats)}
    # spread points of one category a little, in row order (deterministic), so they don't hide each other
    counts: dict[Any, int] = {}
    x = []
    for v in values:
        v = v.item() if hasattr(v, "item") else v
        if fmt.missing(v):
            x.append(np.nan)
            continue
        n = counts[v] = counts.get(v, -1) + 1
        x.append(index[v] + ((n % 5) - 2) * 0.06)
    return np.array(x, dtype=float), [fmt.number(c) for c in cats]


def importance_plot(importances: dict[str, dict[str, float]]) -> str | None:
    """Optuna's parameter importance for monthly $ and for quality, side by side."""
    usd, qual = importances.get("monthly_usd", {}), importances.get("quality", {})
    names = sorted(set(usd) | set(qual), key=lambda k: (usd.get(k, 0.0) + qual.get(k, 0.0), k))
    if not names:
        return None
    with matplotlib.rc_context(STYLE):
        fig = _figure(7.0, 0.35 * len(names) + 1.2)
        ax = fig.add_subplot()
        y = np.arange(len(names))
        ax.barh(y + 0.2, [usd.get(k, 0.0) for k in names], height=0.4, color=COLORS["front"], label=_t("monthly $"))
        ax.barh(y - 0.2, [qual.get(k, 0.0) for k in names], height=0.4, color=COLORS["recommended"], label="quality")
        ax.set_yticks(y, names)
        ax.set_xlabel("importance (PED-ANOVA, normalized to sum 1 per objective)")
        ax.set_title("What mattered")
        ax.legend(loc="lower right", fontsize=7)
        return svg_text(fig)
