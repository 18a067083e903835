"""Pure helpers of the benchmarks: exact 2-D hypervolume, Pareto front, the table's grid, the hand-built chain."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import _search_figures as se_figures  # noqa: E402
import _search_grid as se_grid  # noqa: E402
import _search_runs as se_runs  # noqa: E402
import _search_table as se_table  # noqa: E402
import measure_stability as ms  # noqa: E402
import search_efficiency as se  # noqa: E402

REF = (0.0, 10.0)  # quality above 0, cost below 10


def test_single_point_is_its_rectangle():
    assert se.hypervolume_2d([(0.5, 4.0)], REF) == pytest.approx(0.5 * 6.0)


def test_staircase_by_hand():
    # A (cost 2, q 0.3), B (cost 5, q 0.8), C (cost 8, q 0.9):
    # [0,0.3]x[2,10] = 2.4, plus (0.8-0.3)x(10-5) = 2.5, plus (0.9-0.8)x(10-8) = 0.2 → 5.1
    points = [(0.9, 8.0), (0.3, 2.0), (0.8, 5.0)]
    assert se.hypervolume_2d(points, REF) == pytest.approx(5.1)


def test_dominated_and_duplicate_points_add_nothing():
    base = [(0.3, 2.0), (0.8, 5.0)]
    assert se.hypervolume_2d(base + [(0.2, 3.0), (0.8, 6.0), (0.3, 2.0)], REF) == pytest.approx(se.hypervolume_2d(base, REF))


def test_points_outside_the_reference_count_nothing():
    assert se.hypervolume_2d([(-0.1, 1.0), (0.5, 10.0), (0.5, 12.0)], REF) == 0.0
    assert se.hypervolume_2d([], REF) == 0.0


def test_equal_cost_keeps_the_better_quality():
    assert se.hypervolume_2d([(0.2, 4.0), (0.6, 4.0)], REF) == pytest.approx(0.6 * 6.0)


def test_pareto_front_in_ascending_cost():
    points = [(0.9, 8.0), (0.3, 2.0), (0.8, 5.0), (0.2, 3.0), (0.8, 6.0)]
    assert se.pareto_front(points) == [(0.3, 2.0), (0.8, 5.0), (0.9, 8.0)]


def test_curve_and_trials_to_reach():
    curve = se.hypervolume_curve([None, (0.3, 2.0), None, (0.8, 5.0)], REF)
    assert curve == pytest.approx([0.0, 2.4, 2.4, 4.9])
    assert se.trials_to_reach(curve, 2.4) == 2
    assert se.trials_to_reach(curve, 4.9) == 4
    assert se.trials_to_reach(curve, 5.0) is None


def test_table_grid_has_no_meaningless_knobs_and_distinct_recipes():
    from orchestrator.compress.recipe import Recipe

    recipes = se.table_recipes()
    assert len(recipes) == 180  # (1 + 2 methods x 4 ratios) x 4 bits x (1 + 2 steps x 2 temperatures)
    assert all(r["prune_ratio"] == 0.0 for r in recipes if r["prune_method"] == "none")
    assert all("kd_temperature" not in r for r in recipes if r["kd_steps"] == 0)
    assert len({Recipe(**r).key() for r in recipes}) == len(recipes)


def _lookup(quality: dict, usd: dict) -> dict:
    """A tiny table: structured ratios 0.3/0.5, bits 32/8, kd (0) or (100, T 2)."""
    rows = {}
    grid = {"prune_method": ["none", "structured"], "prune_ratio": [0.3, 0.5], "bits": [32, 8], "kd_steps": [0, 100], "kd_temperature": [2.0]}
    for r in se.table_recipes(grid):
        key = se.grid_key(r)
        rows[key] = {**r, "kd_temperature": r.get("kd_temperature", 4.0), "recipe_key": str(key),
                     "quality": quality.get(key, 0.99), "monthly_usd": usd.get(key, 1000.0), "feasible": True}  # fmt: skip
    return grid, rows


def test_chain_prunes_until_the_bound_breaks_then_takes_fewest_bits_then_distills():
    s5_8_kd = ("structured", 0.5, 8, 100, 2.0)
    grid, rows = _lookup(
        quality={("structured", 0.5, 32, 0, None): 0.97, ("structured", 0.3, 8, 100, 2.0): 0.992},
        usd={("structured", 0.3, 8, 0, None): 200.0, ("structured", 0.3, 8, 100, 2.0): 200.0, s5_8_kd: 50.0},
    )
    chain = se.sequential_chain(rows, grid, teacher_quality=0.99, max_drop=0.01, method="structured")
    assert (chain["prune_method"], chain["prune_ratio"], chain["bits"]) == ("structured", 0.3, 8)
    assert chain["kd"] == {"kd_steps": 100, "kd_temperature": 2.0}
    assert chain["monthly_usd"] == 200.0  # it never sees 0.5 + kd + int8 at $50: it stopped pruning at 0.3
    # teacher, s0.3/32, s0.5/32, then s0.3/8, then s0.3/8 + kd
    assert chain["evaluations"] == 5


def test_spread_figures():
    s = ms.spread([90.0, 100.0, 110.0, 100.0, 105.0])
    assert s["median"] == 100.0
    assert s["range_over_median"] == pytest.approx(0.2)
    assert s["max_deviation_from_median"] == pytest.approx(0.1)


def _searchers(**medians):
    return {name: {"trials_to_95pct": {"median_counted": m, "median": None if m > 120 else m,
                                       "median_counting_not_reached_as": 121}} for name, m in medians.items()}  # fmt: skip


def test_target_is_best_searcher_at_most_half_of_random():
    met = se_figures._target_from(_searchers(tpe=30, random=60, nsga2=45), seeds=60, source="replay")
    assert met["best_searcher"] == "tpe" and met["ratio_best_to_random"] == 0.5 and met["met"] is True
    missed = se_figures._target_from(_searchers(tpe=31, random=60), seeds=60, source="replay")
    assert missed["met"] is False
    censored = se_figures._target_from(_searchers(tpe=40, random=121), seeds=5, source="tuner")
    assert censored["met"] is True and "upper bound" in censored["note"]
    never = se_figures._target_from(_searchers(tpe=121, random=121), seeds=5, source="tuner")
    assert never["met"] is False  # the best never got there: not met, whatever the ratio


def test_targets_are_judged_on_the_replay_where_there_is_one():
    tuner = {"searchers": _searchers(tpe=50, random=60), "seeds": [0, 1, 2, 3, 4], "need_budget": 120}
    replay = {"searchers": _searchers(tpe=30, random=70), "seeds": list(range(60))}
    both = se.check_targets(tuner, replay)
    assert both["tuner"]["met"] is False and both["replay"]["met"] is True and both["met"] is True
    assert se.check_targets(tuner)["met"] is False


def test_replay_proposes_table_recipes_from_the_teacher_on_and_repeats_per_seed():
    rows, sidecar = se.load_table()
    table = {se.grid_key(r): r for r in rows}
    keys = se.replay_search(table, sidecar, "tpe", seed=3, budget=14)
    assert len(keys) == 14 and set(keys) <= {r["recipe_key"] for r in rows}
    teacher = next(r for r in rows if r["prune_method"] == "none" and r["bits"] == 32 and r["kd_steps"] == 0)
    assert keys[0] == teacher["recipe_key"]
    assert se.replay_search(table, sidecar, "tpe", seed=3, budget=14) == keys
    assert se.replay_search(table, sidecar, "tpe", seed=4, budget=14) != keys


def _seed_line(group: str, seed: int, quality: float) -> dict:
    return {"group": group, "seed": seed, "rows": [{"recipe_key": f"{group}-8b", "bits": 8, "quality": quality, "test_quality": quality}]}


def test_a_distilled_row_is_averaged_over_seeds_an_undistilled_row_keeps_its_value():
    row = {"quality": 0.99, "test_quality": 0.98}
    one = se_table._averaged_quality(row, [])
    assert (one["quality"], one["test_quality"], one["quality_seeds"]) == (0.99, 0.98, 1)
    five = se_table._averaged_quality(row, [{"quality": q, "test_quality": 0.97} for q in (0.98, 0.97, 0.96, 0.95)])
    assert five["quality"] == pytest.approx(0.97) and five["test_quality"] == pytest.approx(0.972)
    assert (five["quality_seeds"], five["quality_seed0"], five["quality_min"], five["quality_max"]) == (5, 0.99, 0.95, 0.99)


def test_only_seeds_measured_for_every_distilled_group_are_averaged(tmp_path, monkeypatch):
    import json

    done = {g: {"rows": [{"kd_steps": steps}]} for g, steps in (("a", 100), ("b", 300), ("plain", 0))}
    lines = [_seed_line("a", 1, 0.9), _seed_line("b", 1, 0.8), _seed_line("a", 2, 0.7)]  # seed 2 lacks group b
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    monkeypatch.setattr(se_table, "QUALITY_SEEDS", path)
    seeds, readings = se_table._seed_qualities(done)
    assert seeds == [1]
    assert {k: [r["quality"] for r in v] for k, v in readings.items()} == {"a-8b": [0.9], "b-8b": [0.8]}
    monkeypatch.setattr(se_table, "QUALITY_SEEDS", tmp_path / "absent.jsonl")
    assert se_table._seed_qualities(done) == ([], {})


def test_ratio_spread_bootstraps_seeds_and_judges_each_set_of_five():
    fast, slow = [10] * 10, [40] * 10
    firm = se.ratio_spread(fast, slow, not_reached_as=241, draws=500)
    assert firm["bootstrap_ci95"] == [0.25, 0.25]  # no spread between seeds: no spread in the ratio
    assert (firm["five_seed_sets"], firm["five_seed_sets_meeting_target"]) == (2, 2)
    mixed = se.ratio_spread([10] * 5 + [None] * 5, slow, not_reached_as=241, draws=500)
    assert mixed["five_seed_sets_meeting_target"] == 1  # the set that never got there does not meet it
    assert mixed["five_seed_set_ratios"] == [0.25, round(241 / 40, 3)]
    low, high = mixed["bootstrap_ci95"]
    assert low < high


@pytest.mark.slow
def test_tuner_seed_runs_resume_across_shards_and_judge_the_target_on_the_tuners_runs(tmp_path, monkeypatch):
    """--tuner-seeds: shards append their Tuner runs to one file, the figures wait for every run, and the replay is
    checked against each of them: the replay's many seeds stand for the product's Tuner only if a shared seed proposes
    the same recipes in the same order, for every sampler."""
    import json

    import _common
    import ray

    from orchestrator.search.local_ray import init_embedded_ray

    monkeypatch.setattr(se_runs, "TUNER_SEEDS_RUNS", tmp_path / "runs.jsonl")
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    samplers, seeds = ["tpe", "random"], [0, 1]
    init_embedded_ray(num_cpus=2)
    try:
        se.run_tuner_seeds(samplers, seeds, budget=12, shard=(0, 2))
        assert len(se_grid._read_jsonl(se_runs.TUNER_SEEDS_RUNS)) == 2
        assert se.evaluate_tuner_seeds(samplers, seeds, budget=12) is None  # half the runs: no figures yet
        se.run_tuner_seeds(samplers, seeds, budget=12, shard=(1, 2))
        se.run_tuner_seeds(samplers, seeds, budget=12, shard=(0, 1))  # all done: resuming runs nothing again
    finally:
        ray.shutdown()
    runs = se_grid._read_jsonl(se_runs.TUNER_SEEDS_RUNS)
    assert sorted((r["sampler"], r["seed"]) for r in runs) == sorted((s, k) for s in samplers for k in seeds)
    out = json.loads(se.evaluate_tuner_seeds(samplers, seeds, budget=12).read_text())
    assert out["replay_matches_tuner"] == {"compared": 4, "identical": 4, "differing": []}
    assert out["targets"]["seeds"] == 2 and out["targets"]["best_searcher"] == "tpe"
    reach = out["searchers"]["tpe"]["trials_to_95pct"]
    assert reach["of"] == 2 and reach["median_counting_not_reached_as"] == 13
    runs[0]["table_sha256"] = "0" * 64  # a run searched against another table
    se_runs.TUNER_SEEDS_RUNS.write_text("".join(json.dumps(r) + "\n" for r in runs))
    with pytest.raises(SystemExit, match="another digits_table.csv"):
        se.evaluate_tuner_seeds(samplers, seeds, budget=12)


def test_capacity_prices_the_same_run_under_both_yields_and_the_old_scaling_is_never_dearer(tmp_path):
    import capacity

    from tests.report._fake import make_run

    run = make_run(tmp_path)
    priced = capacity.price_under_yields(run)
    conservative, old = (priced[label] for label in capacity.YIELDS)
    assert conservative["smt_yield"] == 1.0 and old["smt_yield"] == 2.0
    for who in ("demo_recommendation", "baseline"):
        assert old[who]["monthly_usd"] <= conservative[who]["monthly_usd"], who
    assert conservative["baseline"]["trial_id"] == "t0base"
