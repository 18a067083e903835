"""The cost model: instance catalog, traffic and SLO, and candidate -> cheapest feasible $ per month.

Public names are re-exported lazily (PEP 562) so that `hedgerow --help` does not import pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AcceleratorSpec": "orchestrator.cost.catalog",
    "Catalog": "orchestrator.cost.catalog",
    "InstanceType": "orchestrator.cost.catalog",
    "load_catalog": "orchestrator.cost.catalog",
    "Traffic": "orchestrator.cost.traffic",
    "CandidateMetrics": "orchestrator.cost.candidate",
    "CostResult": "orchestrator.cost.model",
    "InstanceCost": "orchestrator.cost.model",
    "explain": "orchestrator.cost.model",
    "price_candidate": "orchestrator.cost.model",
    "replicas_needed": "orchestrator.cost.model",
    "RefreshError": "orchestrator.cost.refresh",
    "refresh_catalog": "orchestrator.cost.refresh",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
