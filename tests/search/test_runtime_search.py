"""A real search over runtimes: the runtime is part of the run folder's contract, and a runtime that cannot run
here (no C++ compiler for inductor) fails its trials with the reason while the search goes on."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from orchestrator.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests.search.conftest import FAST, _merge

    folder = tmp_path_factory.mktemp("runtime-search")
    config = _merge(FAST, {
        "search": {**FAST["search"], "trials": 7},
        "space": {
            "prune_method": {"choices": ["none", "structured"]},
            "prune_ratio": {"low": 0.3, "high": 0.7},
            "bits": {"choices": [32, 8]},
            "runtime": {"choices": ["eager", "compiled", "onnxruntime"]},
        },
    })  # fmt: skip
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    out = folder / "runs"
    with pytest.MonkeyPatch.context() as patch:
        # Ray's workers inherit this environment: inductor finds no C++ compiler, and no cached kernel to reuse.
        patch.setenv("CXX", str(folder / "no-such-g++"))
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(folder / "inductor-cache"))
        assert main(["search", str(path), "--out", str(out)]) == 0
    (run,) = list(out.iterdir())
    return run


def test_trials_csv_records_each_trials_runtime_startup_and_kernels(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    assert {"runtime", "startup_seconds", "kernel_archs"} <= set(frame.columns)
    finished = frame[frame["status"] == "finished"]
    assert set(finished["runtime"]) >= {"eager", "onnxruntime"}
    assert (finished["startup_seconds"] > 0).all()
    ort = finished[finished["runtime"] == "onnxruntime"]
    assert (ort["kernel_archs"] == "x86_64,arm64").all()
    baseline = frame[frame["baseline"]].iloc[0]
    assert baseline["runtime"] == "eager"


def test_a_runtime_that_cannot_compile_fails_its_trials_with_the_reason_and_the_search_goes_on(run_dir):
    frame = pd.read_csv(run_dir / "trials.csv")
    compiled = frame[frame["runtime"] == "compiled"]
    assert len(compiled) >= 1, "the seeded space should sample the compiled runtime at least once"
    assert (compiled["status"] == "failed").all()
    assert compiled["error"].str.contains("needs a working C\\+\\+ compiler").all()
    assert (frame["status"] == "finished").sum() >= 4


def test_the_recommendation_and_trial_records_carry_the_runtime(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["recommended"]["runtime"] in ("eager", "onnxruntime")
    frame = pd.read_csv(run_dir / "trials.csv")
    row = frame[(frame["status"] == "finished") & (frame["runtime"] == "onnxruntime")].iloc[0]
    record = json.loads((run_dir / "trials" / f"{row['recipe_key']}.json").read_text())
    assert record["recipe"]["runtime"] == "onnxruntime" and record["startup"]["seconds"] > 0
    assert any(s["stage"] == "runtime" for s in record["compression"]["steps"])
