"""The verbs the CLI offers, in help order; each registrar adds one or more sub-commands."""

from __future__ import annotations

import argparse
from typing import Callable

from orchestrator.cost.cli import register as _prices
from orchestrator.deploy.cli import register as _export
from orchestrator.loadtest.cli import register as _loadtest
from orchestrator.report.cli import register as _report
from orchestrator.search.cli import register as _search

Registrar = Callable[[argparse._SubParsersAction], None]

REGISTRARS: list[Registrar] = [_search, _report, _export, _loadtest, _prices]
