"""Shared helpers for the cost tests: small hand-written catalogs in a temp dir."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import pytest

from orchestrator.cost.catalog import BUNDLED_INSTANCES, INSTANCE_COLUMNS

WriteCatalog = Callable[[list[dict]], Path]


def instance_row(instance_type: str, usd_per_hour: float, **overrides: object) -> dict:
    """One instance CSV row (CPU by default) with every column filled in."""
    row = {
        "instance_type": instance_type,
        "region": "us-east-1",
        "accelerator": "",
        "accelerator_count": 0,
        "accelerator_memory_gib": 0,
        "vcpus": 4,
        "physical_cores": 2,
        "threads_per_core": 2,
        "memory_gib": 8,
        "on_demand_usd_per_hour": usd_per_hour,
        "spot_usd_per_hour": "",
        "cpu_arch": "x86_64",
        "source": "test",
        "as_of": "2025-07-01",
    }
    row.update(overrides)
    return row


def gpu_row(instance_type: str, usd_per_hour: float, accelerator: str, memory_gib: float, count: int = 1) -> dict:
    """One GPU instance row."""
    return instance_row(
        instance_type,
        usd_per_hour,
        accelerator=accelerator,
        accelerator_count=count,
        accelerator_memory_gib=memory_gib,
        memory_gib=16,
    )


@pytest.fixture
def write_catalog(tmp_path: Path) -> WriteCatalog:
    """Write rows as an instance CSV in tmp_path and return its path."""

    def write(rows: list[dict], columns: list[str] | None = None, name: str = "instances.csv") -> Path:
        path = tmp_path / name
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns or list(INSTANCE_COLUMNS), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return path

    return write


@pytest.fixture
def bundled_rows() -> list[dict]:
    """The bundled snapshot's rows, as strings."""
    with BUNDLED_INSTANCES.open(newline="") as fh:
        return list(csv.DictReader(fh))
