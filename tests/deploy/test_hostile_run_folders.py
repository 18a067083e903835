"""Run folders from someone else (a shared drive, a colleague's tarball): hostile files are refused, exit 2.

Each case damages one file of a copied run folder and runs the verbs that read it: `hedgerow export`
(which must write nothing to its --dest), `hedgerow report` (which must write no report) and
`hedgerow search --resume` (which must refuse before Ray starts).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from tests.deploy.conftest import run_cli

RUN_META = {"run_id": "digits-20260101-000000-abcdef", "created": "2026-01-01T00:00:00+00:00",
            "study_name": "digits-20260101-000000-abcdef", "tune_storage": "", "status": "running"}  # fmt: skip


def _recommended_record(run: Path) -> Path:
    """The record `hedgerow export` reads by default: the recommended trial's."""
    trial_id = json.loads((run / "summary.json").read_text())["recommended"]["trial_id"]
    frame = pd.read_csv(run / "trials.csv", dtype=str)
    key = frame.loc[frame["trial_id"] == trial_id, "recipe_key"].item()
    return run / "trials" / f"{key}.json"


def _edit_csv(column: str, value: str) -> Callable[[Path, Path], None]:
    def mutate(run: Path, tmp: Path) -> None:
        frame = pd.read_csv(run / "trials.csv", dtype=str)
        frame[column] = value
        frame.to_csv(run / "trials.csv", index=False)

    return mutate


def _write(name: str, content: str | bytes) -> Callable[[Path, Path], None]:
    def mutate(run: Path, tmp: Path) -> None:
        path = run / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.format(tmp=tmp))

    return mutate


def _truncate(name: str) -> Callable[[Path, Path], None]:
    def mutate(run: Path, tmp: Path) -> None:
        path = _recommended_record(run) if name == "record" else run / name
        text = path.read_text()
        path.write_text(text[: len(text) // 2])

    return mutate


def _symlink(name: str) -> Callable[[Path, Path], None]:
    def mutate(run: Path, tmp: Path) -> None:
        path = _recommended_record(run) if name == "record" else run / name
        secret = tmp / "someone-elses-secret"
        shutil.copy(path, secret)  # the same content: only the link itself can be refused
        path.unlink()
        path.symlink_to(secret)

    return mutate


def _sparse(name: str, size: int) -> Callable[[Path, Path], None]:
    def mutate(run: Path, tmp: Path) -> None:
        with open(run / name, "r+b") as fh:
            fh.truncate(size)  # sparse: a huge file on paper, nothing on disk

    return mutate


def _record(change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    def mutate(run: Path, tmp: Path) -> None:
        path = _recommended_record(run)
        record = json.loads(path.read_text())
        record = change(record) or record
        path.write_text(json.dumps(record))

    return mutate


def _set_recipe_bits(record: dict) -> None:
    record["recipe"]["bits"] = "eight"


YAML_TAG = '!!python/object/apply:os.system ["touch {tmp}/escaped-yaml"]\n'
YAML_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
)

EXPORT, REPORT = "export", "report"
# (case, mutate, verbs that must refuse it, words the refusal must contain)
CASES = [
    ("recipe-key-traversal", _edit_csv("recipe_key", "../../../../etc/passwd"), [EXPORT], "16 hex digits"),
    ("record-symlink", _symlink("record"), [EXPORT], "symlink"),
    ("record-truncated", _truncate("record"), [EXPORT], "not valid JSON"),
    ("record-not-an-object", _record(lambda r: [r]), [EXPORT], "expected a JSON object, got an array"),
    ("record-recipe-missing", _record(lambda r: {k: v for k, v in r.items() if k != "recipe"}), [EXPORT], "'recipe'"),
    ("record-recipe-wrong-type", _record(_set_recipe_bits), [EXPORT], "recipe.bits"),
    ("summary-truncated", _truncate("summary.json"), [EXPORT, REPORT], "not valid JSON"),
    ("summary-an-array", _write("summary.json", "[1, 2, 3]"), [EXPORT, REPORT], "expected a JSON object"),
    ("summary-oversized", _sparse("summary.json", 64 << 20), [EXPORT, REPORT], "more than the"),
    ("summary-symlink", _symlink("summary.json"), [EXPORT, REPORT], "symlink"),
    ("config-python-tag", _write("config.yaml", YAML_TAG), [EXPORT, REPORT], "plain values only"),
    ("config-alias-bomb", _write("config.yaml", YAML_BOMB), [EXPORT, REPORT], "YAML aliases"),
    ("config-oversized", _sparse("config.yaml", 8 << 20), [EXPORT, REPORT], "more than the"),
    ("config-symlink", _symlink("config.yaml"), [EXPORT, REPORT], "symlink"),
    ("trials-csv-binary", _write("trials.csv", b"\x00\xff\xfe" * 1000), [EXPORT, REPORT], "trials.csv"),
    ("trials-csv-symlink", _symlink("trials.csv"), [EXPORT, REPORT], "symlink"),
    ("trials-csv-oversized", _sparse("trials.csv", 300 << 20), [EXPORT, REPORT], "more than the"),
    ("run-json-truncated", _write("run.json", b'{"run_id": "digits-'), [EXPORT, REPORT], "run.json: not valid JSON"),
]


@pytest.fixture
def copy_run(run_dir, tmp_path) -> Path:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    (copy / "run.json").write_text(json.dumps(RUN_META))
    return copy


@pytest.mark.parametrize(("case", "mutate", "verbs", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_run_folder_is_refused_with_exit_2_and_nothing_written(
    case, mutate, verbs, words, copy_run, tmp_path, capsys
):
    mutate(copy_run, tmp_path)
    out = tmp_path / "out"
    for verb in verbs:
        argv = ["export", str(copy_run), "--dest", str(out)] if verb == EXPORT else ["report", str(copy_run)]
        status, _, err = run_cli(argv, capsys)
        assert status == 2, f"{verb}: {err}"
        assert words in err, f"{verb}: {err}"
    assert not out.exists(), "export wrote into --dest for a refused run folder"
    assert not (copy_run / "report.html").exists() and not (copy_run / "report.md").exists()
    assert not list(tmp_path.rglob("escaped-*")), "a YAML tag ran code"


@pytest.mark.parametrize(
    ("field", "value"),
    [("study_name", "../../../tmp/escaped-study"), ("run_id", {"not": "a string"}), ("study_name", "a;rm -rf /")],
)
def test_resume_refuses_a_hostile_run_json_before_ray_starts(field, value, copy_run, capsys):
    import ray

    meta = dict(RUN_META, **{field: value})
    (copy_run / "run.json").write_text(json.dumps(meta))
    status, _, err = run_cli(["search", "--resume", str(copy_run)], capsys)
    assert status == 2 and f"field {field!r}" in err, err
    assert not ray.is_initialized()


def test_resume_keeps_ray_tunes_state_in_the_run_folder_whatever_run_json_says(copy_run):
    from orchestrator.config import load_config
    from orchestrator.search.runner import RunPaths, read_run_meta

    meta = dict(RUN_META, tune_storage="/etc/cron.d")
    (copy_run / "run.json").write_text(json.dumps(meta))
    paths = RunPaths(copy_run)
    assert read_run_meta(paths, load_config(paths.config))["tune_storage"] == str(copy_run)
