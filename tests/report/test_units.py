"""Each table and figure on small hand-made data; the whole report on a hand-made run folder (no Ray)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import optuna
import pandas as pd
import pytest

from orchestrator.report import _format as fmt
from orchestrator.report.recipes import knob_applies
from orchestrator.report.recipes import recipe_text
from orchestrator.report import content, html, markdown, plots, tables
from orchestrator.report.build import build_report
from orchestrator.report.importance import NOT_ENOUGH, param_importances
from orchestrator.report import upgrade
from orchestrator.report.rundata import load_run
from tests.report._fake import make_run

COLUMNS = ["trial_id", "status", "baseline", "prune_method", "prune_ratio", "bits", "kd_steps", "qat", "kd_alpha", "quality",
           "accuracy_drop", "feasible", "pareto", "monthly_usd", "instance_type", "replicas", "test_accuracy",
           "throughput_sps", "size_bytes", "error", "recipe_key", "fallbacks"]  # fmt: skip
ROWS = [
    ("b", "finished", True, "none", 0.0, 32, 0, False, 0.7, 0.99, 0.0, True, False, 900.0, "c7i.xlarge", 6, 0.985, 400.0, 4e6, None, "kb", ""),
    ("s1", "finished", False, "structured", 0.3, 8, 0, False, 0.7, 0.985, 0.005, True, True, 200.0, "c7i.large", 2, 0.98, 1600.0, 1e6, None, "k1", ""),
    ("s2", "finished", False, "structured", 0.6, 8, 0, False, 0.7, 0.70, 0.29, True, True, 100.0, "c7i.large", 2, 0.7, 4000.0, 5e5, None, "k2", ""),
    ("s3", "finished", False, "structured", 0.6, 8, 100, True, 0.5, 0.984, 0.006, True, False, 250.0, "c7i.large", 3, None, 3900.0, 5e5, None, "k3", ""),
    ("u1", "finished", False, "unstructured", 0.8, 32, 100, False, 0.6, 0.991, -0.001, False, False, None, None, None, None, 420.0, 4e6, None, "k4", ""),
    ("u2", "finished", False, "unstructured", 0.5, 16, 0, False, 0.7, 0.988, 0.002, True, True, 300.0, "c7g.xlarge", 2, 0.987, 800.0, 2e6, None, "k5", "int4 fell back | x"),
    ("f1", "failed", False, "semi_structured_2_4", 0.5, 8, 0, False, 0.7, None, None, False, False, None, None, None, None, None, None,
     "RayTaskError(UnsupportedOnDevice): \x1b[36mray::x\x1b[39m File \"p.py\" mod.UnsupportedOnDevice: needs a GPU", None, None),
    ("st", "stopped", False, "unstructured", 0.9, 4, 200, False, 0.7, 0.91, None, False, False, None, None, None, None, None, None,
     "stopped early by the scheduler at 50 distillation steps", None, None),
]  # fmt: skip


@pytest.fixture
def frame() -> pd.DataFrame:
    return upgrade.trials(pd.DataFrame(ROWS, columns=COLUMNS))  # a table written before quality_drop existed


def _svg_ok(svg: str) -> ET.Element:
    root = ET.fromstring(svg.split("\n", 3)[-1] if svg.startswith("<?xml") else svg)
    assert root.tag.endswith("svg")
    return root


def test_pareto_plot_is_valid_svg_deterministic_and_counts_what_has_no_cost(frame):
    svg = plots.pareto_plot(frame, recommended_id="s1", max_drop=0.01, reference_usd={"u1": 1500.0}, metric="accuracy")
    _svg_ok(svg)
    assert svg == plots.pareto_plot(frame, recommended_id="s1", max_drop=0.01, reference_usd={"u1": 1500.0}, metric="accuracy")
    for text in ("Pareto front (3)", "recommended (s1)", "failed: no quality, no $ (1)", "stopped early, no $ (1)",
                 "infeasible, at its cheapest instance", "Zoom", "$1,000"):  # fmt: skip
        assert text in svg, text
    assert "Date" not in svg.split("</metadata>")[0] or "<dc:date>" not in svg


def test_data_uri_round_trips(frame):
    import base64

    svg = plots.importance_plot({"quality": {"bits": 0.7, "kd_alpha": 0.3}, "monthly_usd": {"bits": 1.0}})
    uri = plots.data_uri(svg)
    assert base64.b64decode(uri.split(",", 1)[1]).decode() == svg


def test_threshold_frame_finds_the_highest_ratio_within_the_bound_and_where_quality_collapses(frame):
    t = tables.threshold_frame(frame, max_drop=0.01).set_index(["prune_method", "distilled"])
    plain = t.loc[("structured", False)]
    assert plain["highest_ratio_within"] == 0.3 and plain["trial_there"] == "s1"
    assert plain["collapse_ratio"] == 0.6 and plain["quality_at_collapse"] == 0.70
    assert t.loc[("structured", True)]["highest_ratio_within"] == 0.6
    assert t.loc[("unstructured", True)]["highest_ratio_within"] == 0.8  # quality improved: still within
    assert ("semi_structured_2_4", False) not in t.index  # failed trials carry no quality
    rows = tables.threshold_table(frame, 0.01).rows
    assert rows[0][:3] == ["structured", "without KD", "1 of 2"] and rows[0][4] == "60.0% (0.7000)"


def test_threshold_plot_marks_ratios_and_is_none_without_pruned_trials(frame):
    thresholds = tables.threshold_frame(frame, 0.01)
    svg = plots.threshold_plot(frame, max_drop=0.01, thresholds=thresholds, metric="accuracy")
    _svg_ok(svg)
    assert "structured, without KD (2)" in svg and "30%" in svg
    unpruned = frame[frame["prune_method"] == "none"]
    assert plots.threshold_plot(unpruned, max_drop=0.01, thresholds=tables.threshold_frame(unpruned, 0.01)) is None


def test_knobs_apply_only_where_the_space_allows_them(frame):
    assert knob_applies(frame, "prune_ratio").tolist() == [p != "none" for p in frame["prune_method"]]
    assert knob_applies(frame, "kd_alpha").tolist() == [s > 0 for s in frame["kd_steps"]]
    assert knob_applies(frame, "qat").tolist() == [s > 0 and b <= 8 for s, b in zip(frame["kd_steps"], frame["bits"])]
    assert tables.varying_knobs(frame) == ["prune_method", "prune_ratio", "bits", "kd_steps", "kd_alpha"]  # as decided
    svg = plots.knob_plots(frame, tables.varying_knobs(frame), reference_usd={"u1": 1500.0}, metric="accuracy",
                           log_knobs=frozenset({"kd_alpha"}))  # fmt: skip
    _svg_ok(svg)
    assert "prune_method" in svg and "unstructured" in svg
    assert plots.knob_plots(frame, []) is None


def test_categorical_positions_are_spread_deterministically():
    x, ticks = plots._positions(pd.Series([8, 8, 32, 16, 8]))
    assert ticks == ["8", "16", "32"]
    assert list(x[[0, 1, 4]]) == [-0.12, -0.06, 0.0] and x[2] == pytest.approx(1.88)
    x, ticks = plots._positions(pd.Series([True, False, True]))
    assert ticks == ["no", "yes"]
    x, ticks = plots._positions(pd.Series([0.1, 0.2]))
    assert ticks is None and list(x) == [0.1, 0.2]


def test_pareto_frame_is_the_front_cheapest_first_with_the_recommended_marked(frame):
    front = tables.pareto_frame(frame, "s1")
    assert front["trial_id"].tolist() == ["s2", "s1", "u2"]
    assert front["recommended"].tolist() == [False, True, False]
    assert str(front["replicas"].dtype) == "Int64"
    table = tables.pareto_table(frame, "s1")
    assert table.highlight == [False, True, False] and table.rows[1][0] == "s1 ★"
    cell = dict(zip(table.columns, table.rows[1]))
    assert cell["serving"] == "2 × c7i.large" and cell["$/month"] == "$200.00"
    assert cell["runtime"] == "eager PyTorch" and cell["start-up (s)"] == fmt.DASH  # a table from before runtimes: eager
    assert "diagnostics (val)" not in table.columns  # a task without text diagnostics gets no such column


def test_failures_show_the_cause_without_terminal_codes(frame):
    rows = tables.failures_table(frame).rows
    assert [r[0] for r in rows] == ["f1", "st"]
    assert rows[0][3] == "UnsupportedOnDevice: needs a GPU"
    assert rows[1][3].startswith("stopped early")
    assert tables.fallbacks_table(frame).rows == [["u2", "int4 fell back | x"]]


def test_importance_table_orders_by_monthly_usd_then_quality():
    t = tables.importance_table({"monthly_usd": {"bits": 0.6, "kd_alpha": 0.0, "prune_ratio": 0.4},
                                 "quality": {"kd_alpha": 0.9, "bits": 0.1}})  # fmt: skip
    assert [r[0] for r in t.rows] == ["bits", "prune_ratio", "kd_alpha"]
    assert t.rows[0][1:] == ["0.6", "0.1"]


def test_importance_says_when_there_are_too_few_trials(tmp_path):
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, values=[0.99, 900.0]))
    study.add_trial(optuna.trial.create_trial(params={"bits": 8}, values=[0.98, 200.0],
                                              distributions={"bits": optuna.distributions.CategoricalDistribution([8, 32])}))  # fmt: skip
    result = param_importances(db, "s")
    assert result.values == {} and result.note.startswith(NOT_ENOUGH)
    assert "could not be read" in param_importances(db, "other").note
    assert "missing" in param_importances(tmp_path / "none.db", "s").note


def test_importance_over_enough_trials_is_deterministic(tmp_path):
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    dist = {"bits": optuna.distributions.CategoricalDistribution([8, 32]), "r": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(12):
        bits, r = (8, 32)[i % 2], i / 12
        study.add_trial(optuna.trial.create_trial(params={"bits": bits, "r": r}, distributions=dist,
                                                  values=[1 - r / 2, 100.0 * bits]))  # fmt: skip
    first = param_importances(db, "s")
    assert set(first.values) == {"quality", "monthly_usd"} and first.n_trials == 12
    assert first.values["monthly_usd"]["bits"] > first.values["monthly_usd"]["r"]
    assert param_importances(db, "s").values == first.values


def test_importance_names_the_knob_not_the_index_optuna_samples(tmp_path):
    """Numeric choices are sampled as `bits_index`; the report speaks of `bits`."""
    db = tmp_path / "optuna.db"
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{db}", directions=["maximize", "minimize"])
    dist = {"bits_index": optuna.distributions.IntDistribution(0, 3), "prune_ratio": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(12):
        index, r = i % 4, i / 12
        study.add_trial(optuna.trial.create_trial(params={"bits_index": index, "prune_ratio": r}, distributions=dist,
                                                  values=[1 - r / 2, 100.0 * (index + 1)]))  # fmt: skip
    values = param_importances(db, "s").values
    assert set(values["monthly_usd"]) == set(values["quality"]) == {"bits", "prune_ratio"}


def test_formats():
    assert fmt.usd(1234.5) == "$1,234.50" and fmt.usd(None) == fmt.DASH and fmt.usd(float("nan")) == fmt.DASH
    assert fmt.size(928701) == "907 KiB" and fmt.ratio(0.2571) == "0.257×" and fmt.percent(0.6) == "60.0%"
    assert recipe_text({"prune_method": "unstructured", "prune_ratio": 0.877, "prune_scope": "global", "bits": 8,
                           "kd_steps": 100, "kd_temperature": 7.9, "kd_alpha": 0.55, "kd_learning_rate": 3.7e-4,
                           "qat": True}) == "unstructured 88% (global) · int8 · KD 100 steps (T 7.9, α 0.55, lr 3.7e-04) · QAT"  # fmt: skip
    assert fmt.short_error(None) == "no reason recorded"
    assert fmt.short_error("ValueError: bad\nthing") == "ValueError: bad thing"


def test_renderers_escape_every_string():
    t = tables.Table(["a|b", "<c>"], [["x|y", "<script>alert(1)</script>"]], [True])
    md = markdown.table(t)
    assert "x\\|y" in md and "\\<script>" in md and not re.search(r"(?<!\\)<", md)
    out = html.table(t)
    assert "<script>" not in out and "&lt;script&gt;" in out and '<tr class="hl">' in out
    assert "&lt;b&gt;" in html.items([("<b>", "x")])


def test_hand_made_run_reports_savings_payback_and_failures(tmp_path):
    root = make_run(tmp_path)
    paths = build_report(root)
    summary = json.loads((root / "summary.json").read_text())
    rec = summary["recommended"]
    assert rec["trial_id"] == "t3" and rec["savings_usd"] > 0 and isinstance(rec["replicas"], int)
    md = paths["markdown"].read_text()
    assert f"{fmt.usd(rec['savings_usd'])}/month saved: {fmt.percent(rec['savings_ratio'])} less" in md
    assert "paid back by" in md and "Test CPU" in md
    assert "UnsupportedOnDevice: 2:4 needs a GPU" in md and "\x1b" not in md
    page = paths["html"].read_text()
    assert "&lt;b&gt;" in page and "<b>" not in page
    assert "not enough" not in page and "no Optuna study in the run folder" in page
    first = {k: p.read_bytes() for k, p in paths.items()}
    assert {k: p.read_bytes() for k, p in build_report(root).items()} == first


def test_hand_made_run_with_a_baseline_that_misses_the_slo(tmp_path):
    run = load_run(make_run(tmp_path, baseline_fast=False))
    headline = dict(content.headline(run))
    assert headline["savings"].startswith("no figure: the uncompressed baseline is infeasible")
    assert "400 ms > SLO 250 ms" in headline["savings"]
    assert "payback" not in headline
    assert "cannot meet the SLO" in content.verdict(run)
    infeasible = tables.infeasible_table(run.trials, run.records).rows
    assert infeasible[0][0] == "t0base (baseline)" and "$" in infeasible[0][3]


def test_inputs_state_how_throughput_was_priced(tmp_path):
    run = load_run(make_run(tmp_path))
    line = dict(content.inputs(run))["throughput"]
    assert "ratio to the teacher (median over 5 interleaved rounds)" in line
    assert "teacher reference of 400 samples/s" in line and "/cache/reference/teacher-sps-test.json" in line
    assert any("throughput_ratio_to_teacher × teacher_reference_sps" in formula for formula in content.FORMULAS)


def test_explanation_table_lists_every_catalog_instance(tmp_path):
    run = load_run(make_run(tmp_path))
    record = run.record("t3")
    t = tables.explanation_table(record)
    assert len(t.rows) == len(record.cost.per_instance) and sum(t.highlight) == 1
    chosen = t.rows[t.highlight.index(True)]
    assert chosen[0] == "c7i.large ★" and chosen[6] == "2" and chosen[7] == "$130.31" and "ceil(2000 rps" in chosen[9]
    gpu = [r for r in t.rows if r[1].startswith("1 ×")]
    assert gpu and all(r[3] == fmt.DASH and r[4] == fmt.DASH and r[8] == "no" for r in gpu)


def test_heldout_table_has_both_candidates_with_intervals(tmp_path):
    run = load_run(make_run(tmp_path))
    rows = tables.heldout_table(run.trials, run.summary).rows
    assert rows[0][0] == "recommended (t3)" and rows[1][0] == "baseline (t0base)"
    assert rows[0][2] == "[0.9740, 0.9890]" and rows[0][5] == "[0.9720, 0.9880]" and rows[0][8] == "0.0060"
    assert rows[1][2] == "[0.9800, 0.9950]" and rows[1][4] == "0.9890"


def test_a_text_run_shows_paired_drop_intervals_and_the_diagnostics_beside_the_objective(tmp_path):
    run = load_run(make_run(tmp_path))
    trials = run.trials.assign(
        quality_metric="ndcg_at_10", recall_at_10=0.7, mrr_at_10=0.5, agreement_at_10=0.809, fidelity=0.9943,
        diagnostic_metrics="recall_at_10,mrr_at_10,agreement_at_10,fidelity",  # what the task reported beside its metric
        quality_drop_ci95_low=run.trials["quality_drop"] - 0.002,
        quality_drop_ci95_high=run.trials["quality_drop"] + 0.003, test_quality_drop=0.0061,
        test_quality_drop_ci95_low=0.0011, test_quality_drop_ci95_high=0.0092,
    )  # fmt: skip
    pareto = tables.pareto_table(trials, "t3")
    cell = dict(zip(pareto.columns, pareto.rows[[r[0] for r in pareto.rows].index("t3 ★")]))
    assert cell["drop (val) [paired 95% CI]"] == "0.0060 [0.0040, 0.0090]"
    assert cell["drop (test) [paired 95% CI]"] == "0.0061 [0.0011, 0.0092]"
    # The task's diagnostics, as it named them: the labeled metrics not chosen, and agreement with the teacher.
    assert cell["diagnostics (val)"] == "recall@10 0.7000 · mrr@10 0.5000 · agreement@10 0.8090 · fidelity 0.9943"
    rec = dict(zip(tables.heldout_table(trials, run.summary).columns, tables.heldout_table(trials, run.summary).rows[0]))
    assert rec["val drop [paired 95% CI]"] == "0.0060 [0.0040, 0.0090]"
    assert rec["test drop [paired 95% CI]"] == "0.0061 [0.0011, 0.0092]"
    assert "quality_drop_ci95_high" in tables.pareto_frame(trials, "t3") and "fidelity" in tables.pareto_frame(trials, "t3")


def test_a_run_with_no_recommendation_still_reports(tmp_path):
    root = make_run(tmp_path)
    summary = json.loads((root / "summary.json").read_text())
    summary.update(recommended=None, recommendation_note="no candidate is cost-feasible and within the quality bound")
    (root / "summary.json").write_text(json.dumps(summary))
    paths = build_report(root)
    md = paths["markdown"].read_text()
    assert "No recommendation: no candidate is cost-feasible" in md and "_no recommended candidate_" in md
    assert "baseline (t0base)" in md


def test_a_run_where_every_trial_failed_still_reports(tmp_path):
    root = make_run(tmp_path)
    trials = pd.read_csv(root / "trials.csv")
    trials["status"], trials["error"] = "failed", "RuntimeError: out of memory"
    for column in ("quality", "monthly_usd", "feasible", "pareto", "instance_type", "replicas"):
        trials[column] = None
    trials.to_csv(root / "trials.csv", index=False)
    summary = json.loads((root / "summary.json").read_text())
    summary.update(baseline=None, recommended=None, pareto=[], n_finished=0, n_failed=len(trials),
                   recommendation_note="every trial failed")  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary))
    paths = build_report(root)
    page = paths["html"].read_text()
    assert "No recommendation: every trial failed." in page and page.count("RuntimeError: out of memory") == len(trials)
    assert pd.read_csv(paths["pareto_csv"]).empty


@pytest.mark.parametrize(
    ("days", "shown"),
    [(2.5, "2.5 days"), (1.0, "1 day"), (0.25, "6 hours"), (5 / (24 * 60), "5 minutes"), (20 / 86400, "20 seconds")],
)
def test_payback_is_shown_in_the_largest_unit_that_is_at_least_one(days, shown):
    assert content._days(days) == shown


def test_the_bundled_catalog_is_named_as_such_not_by_a_path_on_the_searching_machine(tmp_path):
    run = load_run(make_run(tmp_path))
    assert dict(content.inputs(run))["catalog"].startswith("bundled (as of 2025-07-01), region us-east-1")

