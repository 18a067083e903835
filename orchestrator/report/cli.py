"""`hedgerow report RUN_DIR`: rebuild a run folder's report from its stored results."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from orchestrator.report.build import build_report

    paths = build_report(Path(args.run_dir))
    print(paths["markdown"])
    print(paths["pareto_csv"])
    print(paths["html"])  # last line: the report to open
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the report verb."""
    report = sub.add_parser(
        "report",
        help="rebuild a run folder's report (report.html, report.md, pareto.csv) from its stored results",
        description="Rebuild report.html, report.md and pareto.csv from a run folder's stored results; "
        "nothing is re-run. The last line printed is the path of report.html.",
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `hedgerow search`")
    report.set_defaults(handler=_report)
