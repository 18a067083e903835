"""The list of verbs the CLI offers; each registrar adds one sub-command."""

from __future__ import annotations

import argparse
from typing import Callable

Registrar = Callable[[argparse._SubParsersAction], None]

REGISTRARS: list[Registrar] = []
from orchestrator.cost.cli import register as _prices; REGISTRARS.append(_prices)  # noqa: E402,E702
