"""Small, fast search configs for the real-Ray tests."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

FAST = {
    "task": {"name": "digits"},
    "objective": {"max_quality_drop": 0.02},
    # A lenient SLO: these tests check the search's mechanics, and a loaded 2-core CI machine
    # can stretch a batch's p95 well past what the demo's scenario asks for.
    "traffic": {"peak_rps": 40000, "latency_slo_p95_ms": 5000, "serving_batch_size": 256, "min_replicas": 1},
    "deployment": {"instance_filter": ["c7i.*", "c7g.*", "m7i.*", "g5.*"]},
    "search": {
        "trials": 8,
        "max_concurrent": 2,
        "sampler": "random",
        "seed": 0,
        "measure_batch_repeats": 3,
        "measure_latency_repeats": 5,
    },
    "space": {
        "prune_method": {"choices": ["none", "structured", "semi_structured_2_4"]},
        "prune_ratio": {"low": 0.3, "high": 0.7},
        "bits": {"choices": [32, 8]},
        "kd_steps": {"choices": [0, 20]},
    },
}


def minilm_ci_config(folder: Path, **search) -> Path:
    """search_spaces/minilm.yaml at its CI size with a small space over depth, FFN, int8, KD and two runtimes, written
    to folder/minilm.yaml; `search` overrides the search section (trials, ...), a None leaving that key out."""
    from tests.conftest import MINILM_CI, REPO

    config = yaml.safe_load((REPO / "search_spaces" / "minilm.yaml").read_text())
    config["task"]["args"] = {**config["task"]["args"], **MINILM_CI}
    config["objective"]["max_quality_drop"] = 0.5  # the mechanics are under test, not the recommendation
    config["traffic"].update(peak_rps=500, serving_batch_size=16, latency_slo_p95_ms=10000)
    config["search"].update(sampler="random", scheduler="none", measure_batch_repeats=3, measure_latency_repeats=5,
                            measure_rounds=2, **search)  # fmt: skip
    config["search"] = {key: value for key, value in config["search"].items() if value is not None}
    config["space"] = {"keep_layers": {"choices": [3, 6]}, "prune_ffn_ratio": {"choices": [0.0, 0.5]},
                       "bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 10]}, "kd_batch_size": 16,
                       "kd_learning_rate": 0.0001, "runtime": {"choices": ["eager", "onnxruntime"]}}  # fmt: skip
    path = folder / "minilm.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "space":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def write_config(tmp_path):
    """write_config(**sections) -> path of a small search config with those sections overridden."""

    def write(**overrides) -> Path:
        path = tmp_path / "search.yaml"
        path.write_text(yaml.safe_dump(_merge(FAST, overrides)))
        return path

    return write
