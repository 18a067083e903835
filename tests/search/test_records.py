"""A resumed run reuses finished trials' records only when they are plain, whole JSON objects of this version."""

from __future__ import annotations

import json

import pytest

import datetime as dt

from orchestrator.compress import CompressionRecord, Recipe
from orchestrator.cost.model import CostResult
from orchestrator.report.records import RECORD_VERSION, TrialRecord
from orchestrator.search.trial import load_record, record_path

KEY = "0123456789abcdef"


def a_record() -> TrialRecord:
    """The smallest whole record: a teacher that no instance could price."""
    cost = CostResult(
        feasible=False, instance_type=None, accelerator=None, replicas=None, hourly_usd=None, monthly_usd=None,
        projected=False, reason="no instance", per_instance=[], region="us-east-1", catalog_as_of=dt.date(2026, 1, 1),
    )  # fmt: skip
    return TrialRecord(
        row={"trial_id": "t1"}, recipe=Recipe(), compression=CompressionRecord(recipe=Recipe(), device="cpu", steps=[]),
        metrics={}, quality={"metric": "accuracy", "value": 0.9}, cost=cost,
    )  # fmt: skip


def test_a_whole_record_of_this_version_is_reused(tmp_path):
    a_record().write(record_path(str(tmp_path), KEY))
    record = load_record(str(tmp_path), KEY)
    assert record is not None and record.row["trial_id"] == "t1" and record.quality_value == 0.9


@pytest.mark.parametrize(
    "write",
    [
        lambda path, tmp: path.write_text('{"version": 1, "row": {'),  # half-written
        lambda path, tmp: path.write_text("[1, 2]"),  # not an object
        lambda path, tmp: path.write_text(json.dumps({"version": -1})),  # another version
        lambda path, tmp: path.write_text(json.dumps({"version": RECORD_VERSION, "row": {"trial_id": "t1"}})),  # incomplete
        lambda path, tmp: (tmp.joinpath("elsewhere.json").write_text(json.dumps({"version": RECORD_VERSION})),
                           path.symlink_to(tmp / "elsewhere.json")),  # a link out of the run folder
    ],
    ids=["truncated", "an-array", "other-version", "incomplete", "symlink"],
)  # fmt: skip
def test_anything_else_is_recomputed_not_trusted(write, tmp_path):
    records = tmp_path / "trials"
    records.mkdir()
    write(record_path(str(records), KEY), tmp_path)
    assert load_record(str(records), KEY) is None
