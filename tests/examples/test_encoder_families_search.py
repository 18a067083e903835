"""Every encoder family transformer pruning knows, through a real search → export → load in a fresh process.

A tiny, randomly initialised BERT, DistilBERT, ModernBERT and DeBERTa-v3, each saved with a tokenizer the test builds (no hub),
is searched over heads, FFN neurons and layers on real Ray (one embedded Ray for all four), and its most pruned
trial is exported and loaded back in another process: the export replays each family's pruned structure and loads
its weights strictly, or loading fails.

Encoders of no known family (plain nn.Linear attention and FFN, found from their config and shapes) are covered at
the module level in tests/compress/test_encoder_families.py: no architecture shipped with transformers falls to that
path (each either fits a family's table row or is refused, see the closing note of issue 23).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from orchestrator.deploy import export_trial, load
from orchestrator.search.runner import start_search
from tests.conftest import REPO
from tests.search.conftest import FAST
from tests.tasks.text.tiny_bert import FAMILIES, HEADS, LAYERS, save_tiny_encoder

pytestmark = pytest.mark.slow
TEXTS = ["How do I open a file for reading?", "The with statement closes the file.", "sockets: ☃"]
SIZES = {"seq_len": 32, "n_train": 64, "n_val_passages": 40, "n_val_queries": 8, "n_test_passages": 40, "n_test_queries": 8}


@pytest.fixture(scope="module")
def embedded_ray():
    """One Ray for the four searches (the runner joins a Ray already initialized): 4-9 s saved per family."""
    import ray

    from orchestrator.search.local_ray import init_embedded_ray

    init_embedded_ray()
    yield
    ray.shutdown()


def config_for(folder) -> dict:
    return {
        "task": {"name": "examples.hf_encoder_task:make_task", "args": {"model_path": str(folder), "metric": "fidelity", **SIZES}},
        "objective": {"metric": "fidelity", "max_quality_drop": 1.0},  # mechanics, not quality: every trial stands
        "traffic": FAST["traffic"],
        "deployment": FAST["deployment"],
        "search": {**FAST["search"], "trials": 4, "max_concurrent": 2},
        # Every sampled trial prunes heads and FFN neurons; half of them drop a layer; some distill.
        "space": {
            "keep_layers": {"choices": [1, LAYERS]},
            "prune_heads_ratio": {"choices": [0.25, 0.5]},
            "prune_ffn_ratio": {"choices": [0.25, 0.5]},
            "kd_steps": {"choices": [0, 2]},
            "kd_batch_size": 8,
        },
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_a_search_prunes_heads_ffn_and_layers_and_its_export_loads_in_a_fresh_process(family, embedded_ray, tmp_path):
    folder = save_tiny_encoder(tmp_path, family)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config_for(folder)))
    run = start_search(path, out=tmp_path / "runs")

    frame = pd.read_csv(run / "trials.csv")
    assert (frame["status"] == "finished").all(), frame["error"].dropna().tolist()
    assert len(frame) == 4
    pruned = frame[~frame["baseline"].astype(bool)]
    assert (pruned["prune_heads_ratio"] > 0).all() and (pruned["prune_ffn_ratio"] > 0).all()
    teacher_params = int(frame[frame["baseline"].astype(bool)]["params"].iloc[0])
    assert (pruned["params"] < teacher_params).all()
    # The most pruned trial: fewest parameters.
    trial_id = str(pruned.sort_values("params")["trial_id"].iloc[0])

    result = export_trial(run, trial_id, tmp_path / "exports")
    structure = result.manifest.architecture.encoder_structure
    assert structure is not None and all(len(heads) < HEADS for heads in structure["kept_heads"])
    here = load(result.location).embed(TEXTS)

    script = (
        "import json, sys; from orchestrator.deploy import load; "
        "m = load(sys.argv[1]); print(json.dumps(m.embed(sys.argv[2:]).tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, result.location, *TEXTS], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    there = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))
    assert there.shape == here.shape == (len(TEXTS), 32)
    # The same program and weights in both processes: equal up to float rounding of the same kernels.
    assert torch.allclose(there, here, atol=1e-5), float((there - here).abs().max())


def test_validate_refuses_pruning_a_model_no_family_fits_naming_its_class_and_the_knobs_that_still_apply(tmp_path):
    from tests.tasks.text.tiny_bert import save_tiny_mpnet

    config = config_for(save_tiny_mpnet(tmp_path))
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(path)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()[-1]
    assert "space.keep_layers" in error and "MPNetModel fits no encoder layout" in error
    assert "still apply to MPNetModel: bits 8 (int8), runtime" in error
    # Without the pruning knobs, the same model validates: int8, runtimes and distillation still apply.
    config["space"] = {"bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 2]}}
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(path)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
