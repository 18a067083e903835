"""A decoder LLM's report: quality as perplexity (and its change with the paired interval), money per million output
tokens, the token cost model's per-instance table, token traffic among the inputs. Every expected figure is
computed here from the fake run's inputs (tests/report/_fake.make_llm_run), not copied from a report."""

from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from orchestrator.report.build import build_report
from orchestrator.report.content import build
from orchestrator.report.pareto import mark_pareto
from orchestrator.report.rundata import load_run
from tests.report._fake import (
    LLM_FINISHED,
    LLM_MAX_INCREASE,
    LLM_TRAFFIC,
    llm_test_results,
    make_llm_run,
)

OUTPUT_TOKENS = LLM_TRAFFIC["tokens"]["output_tokens"]
UTILIZATION = LLM_TRAFFIC["target_utilization"]


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory):
    """The fake LLM run folder with its report built once."""
    root = make_llm_run(tmp_path_factory.mktemp("llm"))
    build_report(root)
    return root


def ppl(log_ppl: float) -> str:
    return f"{math.exp(log_ppl):,.2f} (log {log_ppl:.4f})"


def pct(drop: float) -> str:
    return f"{math.expm1(drop) * 100:+.2f}%"


def change(drop: float, low: float, high: float) -> str:
    """The perplexity change cell, computed from the nats: exp(·) − 1 of the drop and of each end of its interval."""
    return f"{pct(drop)} [{pct(low)}, {pct(high)}] (Δ {drop:+.4f} [{low:+.4f}, {high:+.4f}] nats)"


def section(md: str, title: str) -> str:
    return md.split(title, 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    """The cells of a Markdown table's body rows, bold marks removed."""
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]
    return [[c.strip().strip("*") for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def quality_of(trial_id: str) -> float:
    return next(q for t, _, q, _, _ in LLM_FINISHED if t == trial_id)


def test_the_headline_reads_quality_as_perplexity_with_the_change_and_its_paired_interval(llm_run):
    md = (llm_run / "report.md").read_text()
    summary = json.loads((llm_run / "summary.json").read_text())
    rec_id = summary["recommended"]["trial_id"]
    base_q, rec_q = LLM_FINISHED[0][2], quality_of(rec_id)
    drop = rec_q - base_q
    trials = pd.read_csv(llm_run / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    low, high = trials.loc[rec_id, "quality_drop_ci95_low"], trials.loc[rec_id, "quality_drop_ci95_high"]
    tests = llm_test_results()
    test = tests[rec_id]
    headline = section(md, "## Recommendation").replace("\\", "")
    assert f"perplexity {ppl(rec_q)} on validation against the baseline's {ppl(base_q)}" in headline
    assert f"change {change(drop, low, high)}" in headline
    assert f"on test {ppl(test['value'])} against the baseline's {ppl(tests['l0base']['value'])}" in headline
    assert change(test["drop"], test["drop_ci95_low"], test["drop_ci95_high"]) in headline
    # The bound in perplexity terms, and the nats it is: ln(1 + max_perplexity_increase).
    assert f"+{LLM_MAX_INCREASE * 100:.2f}% (max_quality_drop ln({1 + LLM_MAX_INCREASE:g}) = {math.log1p(LLM_MAX_INCREASE):.4f} nats per token)" in headline
    verdict = md.split("> ", 1)[1].split("\n", 1)[0].replace("\\", "")
    assert f"perplexity {pct(drop)} against the baseline's" in verdict


def test_money_reads_per_million_output_tokens_with_the_saving_per_token(llm_run):
    md = (llm_run / "report.md").read_text()
    summary = json.loads((llm_run / "summary.json").read_text())
    rec, base = summary["recommended"], summary["baseline"]
    rec_usd, base_usd = rec["usd_per_million_output_tokens"], base["usd_per_million_output_tokens"]
    # summary.json keeps the cost model's figure; recomputed from the price and the instance's tokens/s
    run = load_run(llm_run)
    entry = next(c for c in run.record(rec["trial_id"]).cost.per_instance if c.instance_type == rec["instance_type"])
    assert rec_usd == round(entry.on_demand_usd_per_hour / (entry.output_tokens_per_s * UTILIZATION * 3600) * 1e6, 4)
    headline = section(md, "## Recommendation")
    assert f"${rec['monthly_usd']:,.2f}/month" in headline
    saved = 1 - rec_usd / base_usd
    assert (
        f"${rec_usd:.4f} on {rec['instance_type']} against the baseline's ${base_usd:.4f} on {base['instance_type']}: "
        f"{saved * 100:.1f}% less per token (1 − ${rec_usd:.4f} / ${base_usd:.4f})"
    ) in headline
    assert f"(${rec_usd:.4f} per million output tokens)" in md.split("\n", 3)[2]  # the verdict
    # Nothing the LLM run leaves unset (a batch SLO, a GPU rate) is printed as None.
    assert "None" not in md and "None" not in (llm_run / "report.html").read_text()


def test_the_pareto_table_shows_perplexity_change_and_dollars_per_million_tokens(llm_run):
    md = (llm_run / "report.md").read_text()
    rows = table_rows(section(md, "## Quality against monthly $"))
    header = section(md, "## Quality against monthly $").split("\n| ", 1)[1].split("\n", 1)[0]
    assert "perplexity (val)" in header and "$/M output tokens" in header and "perplexity change (test)" in header
    trials = pd.read_csv(llm_run / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    front = trials[trials["pareto"]]
    assert len(rows) == len(front) > 1
    tests = llm_test_results()
    for cells in rows:
        trial_id = cells[0].split()[0]
        r = front.loc[trial_id]
        q = quality_of(trial_id)
        assert cells[3] == ppl(q)
        assert cells[4] == change(q - LLM_FINISHED[0][2], r["quality_drop_ci95_low"], r["quality_drop_ci95_high"])
        assert cells[5] == ppl(tests[trial_id]["value"])
        t = tests[trial_id]
        assert cells[6] == change(t["drop"], t["drop_ci95_low"], t["drop_ci95_high"])
        assert cells[9] == f"${r['monthly_usd']:,.2f}"
        assert cells[10] == f"${r['usd_per_million_output_tokens']:.4f}"
        assert cells[11] == f"{r['output_tokens_per_s']:,.1f} tok/s at concurrency {int(r['concurrency'])}"
        assert cells[13] != "—"  # size: the weights where the trial recorded no size_bytes
    # pareto.csv: the same figures, machine-readable
    csv = pd.read_csv(llm_run / "pareto.csv", dtype={"trial_id": str}).set_index("trial_id")
    for trial_id, r in csv.iterrows():
        assert r["val_perplexity"] == pytest.approx(math.exp(r["quality"]))
        assert r["perplexity_change"] == pytest.approx(math.expm1(r["quality_drop"]))
        assert r["test_perplexity_change_ci95_high"] == pytest.approx(math.expm1(tests[trial_id]["drop_ci95_high"]))
        assert r["usd_per_million_output_tokens"] == front.loc[trial_id, "usd_per_million_output_tokens"]


def test_the_explanation_table_is_the_token_cost_models(llm_run):
    md = (llm_run / "report.md").read_text()
    text = section(md, "## Why this instance")
    header = [c.strip() for c in text.split("\n| ", 1)[1].split("\n", 1)[0].split("|")[:-1]]
    assert header == ["instance", "device", "price", "concurrency", "TTFT p95", "TPOT p95", "output tokens/s",
                      "requests/s", "how", "replicas", "$/month", "$/M output tokens", "feasible", "reason"]  # fmt: skip
    summary = json.loads((llm_run / "summary.json").read_text())
    record = load_run(llm_run).record(summary["recommended"]["trial_id"])
    rows = {cells[0].split()[0]: cells for cells in table_rows(text)}
    assert rows[summary["recommended"]["instance_type"]][0].endswith("★")
    for cost in record.cost.per_instance:
        cells = rows[cost.instance_type]
        assert cells[2] == f"${cost.on_demand_usd_per_hour:.10g}/h"
        if not cost.feasible:
            continue
        assert cells[3] == str(cost.concurrency)
        assert cells[4] == f"{cost.ttft_p95_ms:.3g} ms" and cells[5] == f"{cost.tpot_p95_ms:.3g} ms"
        assert cells[6] == f"{cost.output_tokens_per_s:,.1f} tok/s"
        assert cells[7] == f"{cost.output_tokens_per_s / OUTPUT_TOKENS:.4g} rps"  # requests/s = tokens/s / output tokens
        assert cells[11] == f"${cost.usd_per_million_output_tokens:.4f}"
        assert f"= ${cost.usd_per_million_output_tokens:.4f} per million output tokens" in cells[13]


def test_the_inputs_state_token_traffic_slos_and_concurrencies(llm_run):
    md = (llm_run / "report.md").read_text()
    given = LLM_TRAFFIC["tokens"]
    inputs = section(md, "## Inputs").replace("\\", "")
    assert f"prompt {given['prompt_tokens']} tokens, output {given['output_tokens']} tokens per request" in inputs
    assert f"TTFT p95 ≤ {given['ttft_slo_p95_ms']} ms; TPOT p95 ≤ {given['tpot_slo_p95_ms']} ms" in inputs
    assert ", ".join(map(str, given["concurrency"])) + " concurrent requests per worker" in inputs
    assert "batch of" not in inputs  # no batch latency SLO for a model priced by its tokens
    assert "$ per million output tokens = on-demand $/hour / (output tokens/s × target_utilization × 3600) × 1e6" in md


def test_recipes_and_knobs_read_in_a_decoders_terms(llm_run):
    md = (llm_run / "report.md").read_text()
    assert "3 of 4 layers · int4 g64 · KD 300 steps" in md
    assert "encoder" not in md.lower()
    knobs = table_rows(section(md, "### Knobs"))
    assert [row[0] for row in knobs][-3:] == ["layers", "attention heads per layer", "FFN width per layer"]


def test_the_report_fills_token_columns_from_records_for_a_folder_without_them(llm_run, tmp_path):
    """A run folder written before trials.csv kept the token columns: the records hold them, and the report reads them."""
    import shutil

    copy = tmp_path / llm_run.name
    shutil.copytree(llm_run, copy)
    frame = pd.read_csv(copy / "trials.csv", dtype={"trial_id": str})
    frame.drop(columns=["usd_per_million_output_tokens", "output_tokens_per_s", "concurrency"]).to_csv(copy / "trials.csv", index=False)
    before = build(load_run(llm_run))
    after = build(load_run(copy))
    assert after.pareto.rows == before.pareto.rows and after.headline == before.headline


def test_the_pareto_front_of_log_perplexity_keeps_the_lower_one():
    """Lower log-perplexity is better: a trial dearer and worse than another is off the front, the teacher on it."""
    frame = pd.DataFrame({
        "trial_id": ["a", "b", "c"], "status": "finished", "feasible": True, "quality_metric": "log_perplexity",
        "quality": [2.30, 2.40, 2.45], "monthly_usd": [100.0, 50.0, 60.0],
    })  # fmt: skip
    without_drops = mark_pareto(frame).tolist()  # read the direction from the metric
    with_drops = mark_pareto(frame.assign(quality_drop=frame["quality"] - 2.30)).tolist()  # from the signed drops
    assert without_drops == with_drops == [True, True, False]


def test_token_fields_are_in_an_llms_summary_and_left_out_of_any_other(llm_run, tmp_path):
    from tests.report._fake import make_run

    llm = json.loads((llm_run / "summary.json").read_text())["recommended"]
    trials = pd.read_csv(llm_run / "trials.csv", dtype={"trial_id": str}).set_index("trial_id")
    assert llm["usd_per_million_output_tokens"] == trials.loc[llm["trial_id"], "usd_per_million_output_tokens"]
    assert llm["concurrency"] == trials.loc[llm["trial_id"], "concurrency"]
    other = json.loads((make_run(tmp_path) / "summary.json").read_text())["recommended"]
    assert "usd_per_million_output_tokens" not in other and "concurrency" not in other
    assert "concurrency" not in pd.read_csv(tmp_path / "digits-fake-run" / "trials.csv").columns
