"""The runtime in the report: summary fields, table columns, the Runtimes section, cross-architecture prices, old runs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from orchestrator.report import _format as fmt
from orchestrator.report.recipes import recipe_text
from orchestrator.report import content, tables
from orchestrator.report.build import build_report
from orchestrator.report.rundata import load_run
from orchestrator.report.summary import build_summary


def summary_json(*args, **kwargs) -> dict:
    """The summary as summary.json holds it."""
    return build_summary(*args, **kwargs).model_dump(mode="json")
from tests.report._fake import make_run, strip_runtimes
from tests.report.test_summary import COST, INPUTS, _frame, _row

CONTRACT = {"trial_id", "knobs", "accuracy", "accuracy_drop", "size_bytes", "throughput_sps", "instance_type", "replicas",
            "monthly_usd", "savings_ratio", "test_accuracy", "test_ci95"}  # fmt: skip
CROSS = "projected across architectures (measured on x86_64)"


@pytest.fixture
def runtimes_run(tmp_path):
    """A fake run that searched eager, compiled and onnxruntime, with c7g (arm64) in the catalog."""
    return make_run(tmp_path, runtimes=True)


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _cheapest_within_bound(trials: pd.DataFrame, runtime: str, max_drop: float = 0.01) -> pd.Series:
    """Recomputed from trials.csv alone: a runtime's cheapest finished, feasible trial within the bound."""
    ok = trials[(trials["runtime"] == runtime) & (trials["status"] == "finished") & (trials["feasible"] == True)  # noqa: E712
                & (trials["quality_drop"] <= max_drop + 1e-12)]  # fmt: skip
    return ok.sort_values(["monthly_usd", "quality_drop"]).iloc[0]


# ---- 1. summary.json: the runtime is a field of every candidate -------------------------------------------


def test_summary_candidates_carry_runtime_and_startup_from_trials_csv(runtimes_run):
    summary = json.loads((runtimes_run / "summary.json").read_text())
    trials = pd.read_csv(runtimes_run / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    rec, base = summary["recommended"], summary["baseline"]
    assert rec["trial_id"] == "t8ort" and rec["runtime"] == "onnxruntime" and rec["startup_seconds"] == 0.412
    assert rec["knobs"]["runtime"] == "onnxruntime"
    assert base["runtime"] == "eager" and base["startup_seconds"] == trials.loc["t0base", "startup_seconds"]
    for candidate in summary["pareto"]:
        row = trials.loc[candidate["trial_id"]]
        assert (candidate["runtime"], candidate["startup_seconds"]) == (row["runtime"], row["startup_seconds"])
    assert CONTRACT <= set(rec)  # the contract's keys are all still there


def test_a_summary_candidate_carries_its_trials_runtime_and_a_start_up_only_where_measured():
    rows = [{**_row("base", 0.99, 1000.0, baseline=True), "runtime": "eager"},
            {**_row("a", 0.985, 250.0), "runtime": "onnxruntime", "startup_seconds": 0.412}]  # fmt: skip
    frame = _frame(rows)
    rec = frame[frame["trial_id"] == "a"].iloc[0]
    tests = {"base": {"value": 0.99}, "a": {"value": 0.985, "ci95_low": 0.97, "ci95_high": 0.99, "n_examples": 360}}
    summary = summary_json(frame, run_id="r", task="digits", metric="accuracy", max_drop=0.01, recommended=rec,
                            passed_over=[], test_results=tests, cost=dict(COST), inputs=INPUTS)  # fmt: skip
    assert summary["recommended"]["runtime"] == "onnxruntime" and summary["recommended"]["startup_seconds"] == 0.412
    assert summary["baseline"]["runtime"] == "eager" and summary["baseline"]["startup_seconds"] is None


# ---- 2. the runtime and the start-up in the tables and the recommendation ---------------------------------


def test_pareto_table_and_csv_show_runtime_and_startup_in_seconds(runtimes_run):
    run = load_run(runtimes_run)
    table = tables.pareto_table(run.trials, "t8ort")
    assert "runtime" in table.columns and "start-up (s)" in table.columns
    rows = {r[0].rstrip(" ★"): dict(zip(table.columns, r)) for r in table.rows}
    assert rows["t8ort"]["runtime"] == "ONNX Runtime" and rows["t8ort"]["start-up (s)"] == "0.412"
    assert rows["t10cmp"]["runtime"] == "torch.compile/inductor" and rows["t10cmp"]["start-up (s)"] == "9.8"
    csv = pd.read_csv(build_report(runtimes_run)["pareto_csv"], dtype={"trial_id": str}).set_index("trial_id")
    assert csv.loc["t8ort", "runtime"] == "onnxruntime" and csv.loc["t8ort", "startup_seconds"] == 0.412
    assert csv.loc["t8ort", "kernel_archs"] == "x86_64,arm64"


def test_the_recommendation_says_which_runtime_serves_it_and_its_cold_start(runtimes_run):
    run = load_run(runtimes_run)
    verdict = content.verdict(run)
    assert "with ONNX Runtime on 3 × c7g.xlarge" in verdict and verdict.endswith("; cold start 0.412 s.")
    line = dict(content.headline(run))["runtime"]
    assert line.startswith("ONNX Runtime (runtime onnxruntime); cold start 0.412 s")
    assert run.records["key-t8ort"].startup["method"] in line  # how it was timed, from the trial's record


def test_keeping_the_baseline_names_its_runtime(tmp_path):
    run = load_run(make_run(tmp_path))
    run.summary = run.summary.model_copy(
        update={"keep_baseline": True, "keep_baseline_reason": "compression saves nothing", "recommended": run.baseline}
    )
    assert content.verdict(run).startswith("Keep the uncompressed model (eager PyTorch, cold start 0.05 s) on ")


# ---- 3. the Runtimes section -------------------------------------------------------------------------------


def test_runtimes_section_lists_each_runtimes_cheapest_candidate_recomputable_from_trials_csv(runtimes_run):
    md = build_report(runtimes_run)["markdown"].read_text()
    section = _section(md, "Runtimes")
    trials = pd.read_csv(runtimes_run / "trials.csv", dtype={"trial_id": str})
    lines = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| runtime")]
    assert len(lines) == 3
    for line, runtime in zip(lines, ["eager", "compiled", "onnxruntime"]):
        cells = [c.strip().strip("*") for c in line.strip("|").split(" | ")]
        best = _cheapest_within_bound(trials, runtime)
        assert cells[0].startswith(f"{runtime} (")
        assert cells[2].rstrip(" ★") == best["trial_id"]
        assert cells[4] == fmt.archs(best["kernel_archs"])
        assert cells[5] == fmt.sps(best["throughput_sps"]) and cells[6] == fmt.seconds(best["startup_seconds"])
        assert cells[7].startswith(f"{fmt.integer(best['replicas'])} × {best['instance_type']}")
        assert cells[8] == fmt.usd(best["monthly_usd"])
    assert [c for c in lines if "★" in c] == [lines[2]]  # the recommended runtime's row


def test_runtimes_note_explains_the_win_by_kernel_architectures(runtimes_run):
    run = load_run(runtimes_run)
    report = content.build(run)
    note = report.runtimes_note
    assert note.startswith("ONNX Runtime is recommended: trial t8ort's kernels run on x86_64, arm64, so it can use "
                           "arm64 instances: 3 × c7g.xlarge ($0.145/h, throughput projected across architectures "
                           "from x86_64) cost $317.55/month.")  # fmt: skip
    unpriced = [c.instance_type for c in run.records["key-t3"].cost.per_instance
                if c.projection_method == "none: needs x86_64"]  # fmt: skip
    assert sorted(unpriced) == ["c7g.2xlarge", "c7g.xlarge"]
    assert (f"eager PyTorch's cheapest, trial t3, costs $586.37/month on 9 × c7i.large; its kernels run on x86_64 only, "
            f"so arm64 instances were not priced for it ({', '.join(unpriced)}: needs x86_64).") in note  # fmt: skip
    assert "torch.compile/inductor's cheapest, trial t9cmp" in note
    page = build_report(runtimes_run)["html"].read_text()
    assert '<a href="#runtimes">Runtimes</a>' in page and '<section id="runtimes">' in page


def test_a_run_with_one_runtime_has_no_runtimes_section(tmp_path):
    root = make_run(tmp_path)
    report = content.build(load_run(root))
    assert report.runtimes is None and report.runtimes_note == ""
    paths = build_report(root)
    assert "## Runtimes" not in paths["markdown"].read_text()
    assert 'href="#runtimes"' not in paths["html"].read_text()


def test_a_runtime_with_nothing_within_the_bound_says_so(runtimes_run):
    run = load_run(runtimes_run)
    trials = run.trials.copy()
    trials.loc[trials["trial_id"] == "t9cmp", "quality_drop"] = 0.5  # compiled's int8 candidate now misses the bound
    trials.loc[trials["trial_id"] == "t10cmp", "feasible"] = False
    best = tables.best_per_runtime(trials, 0.01, set())
    assert best["compiled"] is None and best["onnxruntime"]["trial_id"] == "t8ort"
    row = tables.runtimes_table(trials, best, run.records, "t8ort").rows[1]
    assert row[:3] == ["compiled (torch.compile/inductor)", "2 of 2", "none within the bound"]
    assert "torch.compile/inductor: no feasible candidate within the bound" in content.runtimes_note(run, best)


def test_candidates_passed_over_on_test_are_not_a_runtimes_cheapest(runtimes_run):
    run = load_run(runtimes_run)
    assert tables.best_per_runtime(run.trials, 0.01, {"t8ort"})["onnxruntime"] is None


# ---- 4. prices projected across CPU architectures ----------------------------------------------------------


def test_cost_table_marks_prices_projected_across_architectures(runtimes_run):
    run = load_run(runtimes_run)
    table = tables.explanation_table(run.record("t8ort"))
    how = {r[0].rstrip(" ★"): r[4] for r in table.rows}
    assert how["c7g.xlarge"] == CROSS and how["c7g.2xlarge"] == CROSS
    assert how["c7i.large"] == "projected"  # same architecture: plainly projected
    assert table.rows[table.highlight.index(True)][0] == "c7g.xlarge ★"
    serving = dict(content.headline(run))["serving"]
    assert serving == "3 × c7g.xlarge (throughput projected across architectures: measured on x86_64, the instance is arm64)"
    md = build_report(runtimes_run)["markdown"].read_text()
    assert CROSS in _section(md, "Why this instance: the cost model for the recommended candidate")


def test_cross_architecture_is_read_from_the_cost_models_wording():
    method = "cross-architecture (measured on x86_64, instance is arm64), per-core scaling only: 1 sps"
    assert tables.cross_architecture(method) == ("x86_64", "arm64")
    assert tables.cross_architecture("per-core scaling from Test CPU: 1 sps") is None
    assert tables.cross_architecture(None) is None


# ---- 5. run folders from before runtimes ----------------------------------------------------------------------


def test_an_old_run_folder_without_runtime_columns_still_reports_as_eager(tmp_path):
    root = strip_runtimes(make_run(tmp_path))
    assert "runtime" not in pd.read_csv(root / "trials.csv").columns
    paths = build_report(root)
    run = load_run(root)
    assert (run.trials["runtime"] == "eager").all() and run.trials["startup_seconds"].isna().all()
    md = paths["markdown"].read_text()
    assert "## Runtimes" not in md
    pareto = tables.pareto_table(run.trials, "t3")
    assert {r[2] for r in pareto.rows} == {"eager PyTorch"} and {r[pareto.columns.index("start-up (s)")] for r in pareto.rows} == {fmt.DASH}
    assert "cold start" not in content.verdict(run) and "with eager PyTorch" in content.verdict(run)
    assert dict(content.headline(run))["runtime"].endswith("cold start not recorded (a run from before start-up was measured)")
    assert pd.read_csv(paths["pareto_csv"])["runtime"].eq("eager").all()


def test_formats_for_runtimes():
    assert fmt.runtime("onnxruntime") == "ONNX Runtime" and fmt.runtime(None) == fmt.DASH  # none recorded: unknown
    assert fmt.runtime("tvm") == "tvm"
    assert fmt.archs("x86_64") == "x86_64 only" and fmt.archs("x86_64,arm64") == "x86_64, arm64"
    assert fmt.archs("any") == "any CPU" and fmt.archs(None) == fmt.DASH
    assert fmt.seconds(0.41234) == "0.412" and fmt.seconds(12.5) == "12.5" and fmt.seconds(float("nan")) == fmt.DASH
    knobs = {"prune_method": "none", "bits": 8, "kd_steps": 0, "runtime": "onnxruntime"}
    assert recipe_text(knobs) == "no pruning · int8 · no distillation · ONNX Runtime"
    assert recipe_text(knobs, with_runtime=False) == "no pruning · int8 · no distillation"
    assert recipe_text({**knobs, "runtime": "eager"}) == "no pruning · int8 · no distillation"


def test_runtimes_note_on_a_same_architecture_win_claims_no_arm64(runtimes_run):
    run = load_run(runtimes_run)
    trials = run.trials.copy()
    trials.loc[trials["trial_id"] == "t8ort", "feasible"] = False  # ONNX Runtime out: torch.compile's t9cmp is cheapest
    run.summary.recommended = run.summary.recommended.model_copy(update={
        "trial_id": "t9cmp", "runtime": "compiled", "replicas": 2, "instance_type": "c7i.2xlarge", "monthly_usd": 521.22,
    })  # fmt: skip
    note = content.runtimes_note(run, tables.best_per_runtime(trials, 0.01, set()))
    assert note.startswith("torch.compile/inductor is recommended: trial t9cmp's kernels run on x86_64 only; "
                           "2 × c7i.2xlarge (x86_64, $0.357/h) cost $521.22/month.")  # fmt: skip
    assert "ONNX Runtime: no feasible candidate within the bound" in note and "not priced" not in note


def test_a_dollar_tie_between_runtimes_says_how_it_was_broken(runtimes_run):
    run = load_run(runtimes_run)
    rec = run.recommended
    tied = pd.Series({"trial_id": "tie1", "monthly_usd": rec.monthly_usd, "throughput_sps": 1000.0, "replicas": 1,
                      "instance_type": "c7i.large", "kernel_archs": "x86_64"})  # fmt: skip
    note = content.runtimes_note(run, {"onnxruntime": None, "eager": tied})
    assert "Where the $/month ties, the smaller quality drop wins" in note and "trial tie1's 1,000 sps" in note
    cheaper_elsewhere = tied.copy()
    cheaper_elsewhere["monthly_usd"] = rec.monthly_usd + 1
    assert "ties" not in content.runtimes_note(run, {"onnxruntime": None, "eager": cheaper_elsewhere})
