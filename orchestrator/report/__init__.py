"""Results → DataFrame → Pareto → summary → the cost report (HTML, Markdown, CSV).

`build_report` is re-exported lazily (PEP 562): the search imports the results
and Pareto modules without loading matplotlib.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from orchestrator.report.build import build_report

        return build_report
    raise AttributeError(f"module 'orchestrator.report' has no attribute {name!r}")
