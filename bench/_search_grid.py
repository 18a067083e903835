"""The search-efficiency benchmark's grid, files and pure helpers: hypervolume, the Pareto front, the
table's recipes and the hand-built sequential chain."""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
TABLE_CSV = DATA / "digits_table.csv"
TABLE_JSON = DATA / "digits_table.json"
CONFIG = REPO / "search_spaces" / "digits.yaml"

# The grid. Knobs not named here stay at the Recipe's defaults (l2 importance,
# global scope, kd_alpha 0.7, kd_learning_rate 1e-3, kd_batch_size 64, no QAT).
GRID: dict[str, list] = {
    "prune_method": ["none", "structured", "unstructured"],
    "prune_ratio": [0.3, 0.5, 0.7, 0.85],
    "bits": [32, 16, 8, 4],
    "kd_steps": [0, 100, 300],
    "kd_temperature": [2.0, 6.0],
}
SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
BUDGETS = (10, 20, 40)
NEED_BUDGET = 240  # the trials-to-95% runs: long enough that random search gets there in most seeds
REPLAY_SAMPLERS = ("tpe", "nsga2", "random", "grid")  # GP's fit makes 60 seeds × 240 trials take over an hour
TARGET_FRACTION = 0.95
COST_MARGIN_LOG10 = 0.05  # the $ reference point sits this far (×1.12) above the dearest feasible row
RECIPE_SEED = 0  # every table recipe is built with seed 0, whatever the search's seed
QUALITY_SEED_LIST = (1, 2, 3, 4)  # further distillation seeds a distilled row's quality is averaged over


def hypervolume_2d(points: Iterable[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Exact area dominated by (quality, cost) points, quality maximized, cost minimized, bounded by ref.

    ref = (q_ref, c_ref): only points with quality > q_ref and cost < c_ref count.
    Sweep in ascending cost: each point that raises the best quality so far adds
    the strip (q − q_best_before) × (c_ref − c).
    """
    q_ref, c_ref = ref
    inside = sorted((c, -q) for q, c in points if q > q_ref and c < c_ref)
    area, best = 0.0, q_ref
    for c, neg_q in inside:
        q = -neg_q
        if q > best:
            area += (q - best) * (c_ref - c)
            best = q
    return area


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (quality max, cost min) points, in ascending cost."""
    front: list[tuple[float, float]] = []
    best = -math.inf
    for c, neg_q in sorted((c, -q) for q, c in set(points)):
        if -neg_q > best:
            front.append((-neg_q, c))
            best = -neg_q
    return front


def hypervolume_curve(points: Sequence[tuple[float, float] | None], ref: tuple[float, float]) -> list[float]:
    """Hypervolume after each trial (None = an infeasible trial, which adds nothing)."""
    curve, seen = [], []
    for p in points:
        if p is not None:
            seen.append(p)
        curve.append(hypervolume_2d(seen, ref))
    return curve


def trials_to_reach(curve: Sequence[float], target: float) -> int | None:
    """The first trial count (1-based) whose hypervolume reaches target, or None."""
    for i, value in enumerate(curve):
        if value >= target - 1e-12:
            return i + 1
    return None


def table_recipes(grid: dict[str, list] | None = None) -> list[dict[str, Any]]:
    """Every distinct recipe of the grid: no ratio without pruning, no temperature without distillation."""
    return [knobs for _, *group in table_groups(grid) for knobs in group_recipes(*group, grid=grid)]


def group_recipes(method: str, ratio: float, steps: int, temp: float | None, grid: dict[str, list] | None = None) -> list[dict[str, Any]]:
    """The knobs of each bit-width of one group."""
    grid = GRID if grid is None else grid
    recipes = []
    for bits in grid["bits"]:
        knobs: dict[str, Any] = {"prune_method": method, "prune_ratio": ratio, "bits": bits, "kd_steps": steps}
        if steps:
            knobs["kd_temperature"] = temp
        recipes.append(knobs)
    return recipes


def kd_settings(grid: dict[str, list] | None = None) -> list[tuple[int, float | None]]:
    """(kd_steps, temperature) pairs: (0, None) once, then every steps > 0 × temperature."""
    grid = GRID if grid is None else grid
    return [(0, None)] + [(s, t) for s in grid["kd_steps"] if s > 0 for t in grid["kd_temperature"]]


def table_groups(grid: dict[str, list] | None = None) -> list[tuple[str, str, float, int, float | None]]:
    """(name, prune method, ratio, kd_steps, temperature) of each group the build prunes and distils once.

    The name keys a group in the raw readings and in the further seeds' readings alike.
    """
    grid = GRID if grid is None else grid
    prefixes = [(m, r) for m in grid["prune_method"] for r in ([0.0] if m == "none" else grid["prune_ratio"])]
    return [(f"{m}-{r}-{s}-{t}", m, r, s, t) for m, r in prefixes for s, t in kd_settings(grid)]


def _selected(name: str) -> bool:
    """Whether HEDGEROW_BENCH_GROUPS (a comma list of group names, for trying the build quickly) lets a group run."""
    only = os.environ.get("HEDGEROW_BENCH_GROUPS")
    return not only or name in only.split(",")


def median_or_none(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def within_bound(row: dict, teacher_quality: float, max_drop: float) -> bool:
    """The quality bound the product enforces (drop ≤ max_quality_drop)."""
    return teacher_quality - float(row["quality"]) <= max_drop + 1e-12


def is_feasible(row: dict, teacher_quality: float, max_drop: float) -> bool:
    """Within the quality bound and priced on a feasible instance."""
    return within_bound(row, teacher_quality, max_drop) and _bool(row["feasible"])


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("true", "1", "yes")


def sequential_chain(lookup: dict[tuple, dict], grid: dict[str, list], teacher_quality: float, max_drop: float, method: str, pick_bits: str = "fewest") -> dict:
    """The chain users build by hand, run on the table; every distinct row it reads is one evaluation.

    1. prune: raise the ratio (ascending grid values) at full precision without
       distillation while quality stays within the bound; keep the highest that did.
    2. bits: at that ratio, try every lower precision; keep the fewest bits within
       the bound (pick_bits="cheapest": the cheapest within the bound instead).
    3. distill: at that (ratio, bits), try every distillation setting; keep the one
       with the best quality within the bound (or none if none helps).
    4. instance: the table's cost already is the cheapest feasible instance.
    The chain's answer is the cheapest feasible row among those it kept at each step.
    """
    read: dict[tuple, dict] = {}

    def get(method_: str, ratio: float, bits: int, steps: int = 0, temp: float | None = None) -> dict:
        key = (method_, ratio if method_ != "none" else 0.0, bits, steps, temp if steps else None)
        read[key] = lookup[key]
        return read[key]

    ok = lambda r: within_bound(r, teacher_quality, max_drop)  # noqa: E731
    teacher = get("none", 0.0, 32)
    chosen_method, ratio = "none", 0.0
    for r in sorted(grid["prune_ratio"]):
        if not ok(get(method, r, 32)):
            break
        chosen_method, ratio = method, r
    base = get(chosen_method, ratio, 32)
    bits, bits_row = 32, base
    candidates = [(b, get(chosen_method, ratio, b)) for b in sorted(grid["bits"], reverse=True) if b != 32]
    kept = [(b, row) for b, row in candidates if ok(row)]
    if kept:
        if pick_bits == "fewest":
            bits, bits_row = min(kept, key=lambda br: br[0])
        else:
            bits, bits_row = min(kept, key=lambda br: (_cost_key(br[1], teacher_quality, max_drop), -br[0]))
    kd_rows = [get(chosen_method, ratio, bits, s, t) for s, t in kd_settings(grid) if s > 0]
    kd_best = max((r for r in kd_rows if ok(r)), key=lambda r: float(r["quality"]), default=None)
    finalists = [teacher, base, bits_row] + ([kd_best] if kd_best is not None else [])
    feasible = [(i, r) for i, r in enumerate(finalists) if is_feasible(r, teacher_quality, max_drop)]
    # cheapest; on a tie the later step's recipe (the one the chain ends with), then the better quality
    best = min(feasible, key=lambda ir: (float(ir[1]["monthly_usd"]), -ir[0], -float(ir[1]["quality"])))[1] if feasible else None
    return {
        "method_tried": method,
        "prune_method": chosen_method,
        "prune_ratio": ratio,
        "bits": bits,
        "kd": None if kd_best is None else {"kd_steps": int(kd_best["kd_steps"]), "kd_temperature": float(kd_best["kd_temperature"])},
        "answer": None if best is None else _brief(best),
        "monthly_usd": None if best is None else float(best["monthly_usd"]),
        "evaluations": len(read),
    }


def _cost_key(row: dict, teacher_quality: float, max_drop: float) -> float:
    return float(row["monthly_usd"]) if is_feasible(row, teacher_quality, max_drop) else math.inf


def _brief(row: dict) -> dict:
    keys = ("recipe_key", "prune_method", "prune_ratio", "bits", "kd_steps", "kd_temperature", "quality", "test_quality",
            "throughput_sps", "instance_type", "replicas", "monthly_usd")  # fmt: skip
    out = {k: row.get(k) for k in keys}
    if not int(float(row["kd_steps"])):
        out.pop("kd_temperature")
    return out


def grid_key(row: dict) -> tuple:
    """(method, ratio, bits, kd_steps, temperature or None): the table's natural key."""
    steps = int(float(row["kd_steps"]))
    method = row["prune_method"]
    return (method, float(row["prune_ratio"]) if method != "none" else 0.0, int(float(row["bits"])), steps,
            float(row["kd_temperature"]) if steps else None)  # fmt: skip


def _search_config(sampler: str = "tpe", seed: int = 0, budget: int = 24, base: dict | None = None):
    """digits.yaml (or the snapshot the table was built with) with its space restricted to exactly the grid, as Choices."""
    import copy

    from orchestrator.config import parse_config, read_yaml

    raw = copy.deepcopy(base) if base is not None else read_yaml(CONFIG)
    raw["space"] = {name: {"choices": list(values)} for name, values in GRID.items()}
    raw["search"].update(trials=budget, sampler=sampler, seed=seed, max_concurrent=1)
    return parse_config(raw, f"{CONFIG} (benchmark grid)")


def _snapshot(config) -> dict:
    """The parts of a config that decide a table row: task, objective, traffic, deployment, search settings."""
    return config.model_dump(mode="json", exclude={"space"})


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
