"""Helpers shared by the benchmarks: machine identity and writing JSON figures."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

import torch

from orchestrator.safe_files import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """Where the figures were measured."""
    from orchestrator.measure import device_info

    info = device_info("cpu").model_dump()
    info.update(
        cores=os.cpu_count(),
        python=sys.version.split()[0],
        torch=torch.__version__,
        platform=platform.platform(),
        measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return info


def write(name: str, payload: dict) -> Path:
    """Write bench/results/<name>.json and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path
