"""A resumed run reuses finished trials' records only when they are plain, whole JSON objects of this version."""

from __future__ import annotations

import json

import pytest

from orchestrator.search.trial import RECORD_VERSION, load_record, record_path

KEY = "0123456789abcdef"


def test_a_plain_record_of_this_version_is_reused(tmp_path):
    record_path(str(tmp_path), KEY).write_text(json.dumps({"version": RECORD_VERSION, "row": {"trial_id": "t1"}}))
    assert load_record(str(tmp_path), KEY)["row"] == {"trial_id": "t1"}


@pytest.mark.parametrize(
    "write",
    [
        lambda path, tmp: path.write_text('{"version": 1, "row": {'),  # half-written
        lambda path, tmp: path.write_text("[1, 2]"),  # not an object
        lambda path, tmp: path.write_text(json.dumps({"version": -1})),  # another version
        lambda path, tmp: (tmp.joinpath("elsewhere.json").write_text(json.dumps({"version": RECORD_VERSION})),
                           path.symlink_to(tmp / "elsewhere.json")),  # a link out of the run folder
    ],
    ids=["truncated", "an-array", "other-version", "symlink"],
)  # fmt: skip
def test_anything_else_is_recomputed_not_trusted(write, tmp_path):
    records = tmp_path / "trials"
    records.mkdir()
    write(record_path(str(records), KEY), tmp_path)
    assert load_record(str(records), KEY) is None
