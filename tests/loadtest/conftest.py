"""A run folder with one trial (real compression and cost model, no search), for the load test's CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.conftest import RECIPES, write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, digits_task, teacher) -> Path:
    """A run folder whose one (recommended) trial is a pruned bf16 candidate (the quickest of the fixtures to export)."""
    return write_run(tmp_path_factory.mktemp("runs"), digits_task, teacher, {"bf16half": RECIPES["bf16half"]}, "bf16half")
