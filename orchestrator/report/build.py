"""Build a run folder's report from what the search stored: report.html, report.md and pareto.csv.

Reads only the run folder (trials.csv, summary.json, config.yaml, run.json,
trials/*.json, optuna.db) and never re-runs a trial. Each file is written to a
temporary name and renamed into place, so a reader never sees half a report.
The same run folder always gives the same bytes: no build time, fixed SVG ids,
sorted iteration.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.report import content, html, markdown
from orchestrator.report.rundata import load_run
from orchestrator.safe_files import write_atomic

OUTPUTS = {"html": "report.html", "markdown": "report.md", "pareto_csv": "pareto.csv"}


def build_report(run_dir: Path) -> dict[str, Path]:
    """Write report.html, report.md and pareto.csv into `run_dir`; return their paths by kind.

    Raises orchestrator.errors.InputError where `run_dir` is not a finished run folder.
    """
    run = load_run(run_dir)
    report = content.build(run)
    root = run.root
    paths = {kind: root / name for kind, name in OUTPUTS.items()}
    csv_text = report.pareto_csv.to_csv(index=False, lineterminator="\n")
    write_atomic(paths["pareto_csv"], csv_text)
    write_atomic(paths["markdown"], markdown.render(report))
    write_atomic(paths["html"], html.render(report))  # last: its presence means the report is complete
    return paths
