"""The report of a real search: files written atomically, consistent with summary.json, byte-identical on rebuild."""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest

from orchestrator import _cli_verbs
from orchestrator.cli import main
from orchestrator.errors import InputError
from orchestrator.report import _format as fmt
from orchestrator.report.build import build_report
from orchestrator.report.cli import register

pytestmark = pytest.mark.slow


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def with_report_verb(monkeypatch):
    """The CLI with `report` registered (a no-op once the lead wires it into orchestrator/_cli_verbs.py)."""
    if register not in _cli_verbs.REGISTRARS:
        monkeypatch.setattr(_cli_verbs, "REGISTRARS", [*_cli_verbs.REGISTRARS, register])


def test_build_writes_the_three_files_and_leaves_no_temporary_ones(run_dir, built):
    assert set(built) == {"html", "markdown", "pareto_csv"}
    for path in built.values():
        assert path.parent == run_dir and path.stat().st_size > 0
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_markdown_and_pareto_csv_agree_with_summary(run_dir, built):
    summary = json.loads((run_dir / "summary.json").read_text())
    rec = summary["recommended"]
    assert rec is not None, "the fast config should recommend a candidate"
    md = built["markdown"].read_text()
    headline = md.split("## Recommendation", 1)[1].split("## ", 1)[0]
    assert f"trial {rec['trial_id']}" in headline
    assert f"{fmt.integer(rec['replicas'])} × {rec['instance_type']}" in headline
    assert f"{fmt.usd(rec['monthly_usd'])}/month" in headline

    pareto = pd.read_csv(built["pareto_csv"], dtype={"trial_id": str})
    assert list(pareto["trial_id"]) == [p["trial_id"] for p in summary["pareto"]]
    assert pareto["monthly_usd"].tolist() == [p["monthly_usd"] for p in summary["pareto"]]
    assert pareto["instance_type"].tolist() == [p["instance_type"] for p in summary["pareto"]]
    chosen = pareto[pareto["recommended"]]
    assert chosen["trial_id"].tolist() == [rec["trial_id"]]
    assert chosen["monthly_usd"].item() == rec["monthly_usd"] and chosen["instance_type"].item() == rec["instance_type"]
    assert chosen["replicas"].item() == rec["replicas"]
    # the Markdown's Pareto table lists the same trials, cheapest first
    table = md.split("## Quality against monthly $", 1)[1].split("## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| trial")]
    assert [re.sub(r"\(seeded\)|[*★ ]", "", r.split("|")[1]) for r in rows] == list(pareto["trial_id"])


def test_trials_csv_failures_show_with_their_cause(run_dir, built):
    trials = pd.read_csv(run_dir / "trials.csv", dtype={"trial_id": str})
    failed = trials[trials["status"] == "failed"]
    md = built["markdown"].read_text()
    for _, row in failed.iterrows():
        assert row["trial_id"] in md
    if len(failed):
        assert "not supported on this device" in md and "\x1b" not in md


def test_rebuilding_gives_byte_identical_files_and_touches_nothing_else(run_dir, built):
    before = _digests(run_dir)
    again = build_report(run_dir)
    assert again == built
    assert _digests(run_dir) == before


def test_report_html_is_self_contained(built):
    html = built["html"].read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert html.count('src="data:image/svg+xml;base64,') >= 2


def test_cli_rebuilds_and_prints_the_html_path_last(run_dir, built, capsys, with_report_verb):
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(built["html"])


def test_cli_on_a_folder_that_is_not_a_run_exits_2(tmp_path, capsys, with_report_verb):
    (tmp_path / "notes.txt").write_text("not a run")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a finished Hedgerow run folder" in err and "summary.json" in err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_an_unfinished_run_points_at_resume(tmp_path):
    (tmp_path / "config.yaml").write_text("task: {name: digits}\n")
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(InputError, match="--resume"):
        build_report(tmp_path)
