"""Every encoder family transformer pruning knows, through a real search → export → load in a fresh process.

A tiny, randomly initialised BERT, DistilBERT, ModernBERT and DeBERTa-v3, each saved with a tokenizer the test builds (no hub),
is searched over heads, FFN neurons and layers on real Ray (one embedded Ray for all four), and its pruned
trial is exported and loaded back in another process (one for all four): the export replays each family's pruned structure and loads
its weights strictly, or loading fails.

Encoders of no known family (plain nn.Linear attention and FFN, found from their config and shapes) are covered at
the module level in tests/compress/test_encoder_families.py: no architecture shipped with transformers falls to that
path (each either fits a family's table row or is refused, see the closing note of issue 23).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

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


def config_for(folder) -> dict:
    return {
        "task": {"name": "examples.hf_encoder_task:make_task", "args": {"model_path": str(folder), "metric": "fidelity", **SIZES}},
        "objective": {"metric": "fidelity", "max_quality_drop": 1.0},  # mechanics, not quality: every trial stands
        "traffic": FAST["traffic"],
        "deployment": FAST["deployment"],
        "search": {**FAST["search"], "trials": 2, "max_concurrent": 2},  # the teacher and one pruned trial, side by side
        # The sampled trial drops a layer and prunes heads and FFN neurons; it may distill.
        "space": {
            "keep_layers": LAYERS - 1,
            "prune_heads_ratio": {"choices": [0.25, 0.5]},
            "prune_ffn_ratio": {"choices": [0.25, 0.5]},
            "kd_steps": {"choices": [0, 2]},
            "kd_batch_size": 8,
        },
    }


@dataclass
class FamilyRun:
    """One family's search, its pruned trial's export, and that export's embeddings here and in a fresh process."""

    frame: pd.DataFrame | None = None
    result: object = None
    here: torch.Tensor | None = None
    there: torch.Tensor | None = None
    error: BaseException | None = None


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory) -> dict[str, FamilyRun]:
    """Each family searched on one embedded Ray (the runner joins a Ray already initialized: 4-9 s saved a family),
    its pruned trial exported and embedded here, then every export loaded in one fresh process (one interpreter start)."""
    import ray

    from orchestrator.search.local_ray import init_embedded_ray

    runs = {family: FamilyRun() for family in FAMILIES}
    init_embedded_ray()
    try:
        for family, run in runs.items():
            root = tmp_path_factory.mktemp(family)
            try:
                path = root / "search.yaml"
                path.write_text(yaml.safe_dump(config_for(save_tiny_encoder(root, family))))
                folder = start_search(path, out=root / "runs")
                run.frame = pd.read_csv(folder / "trials.csv")
                pruned = run.frame[~run.frame["baseline"].astype(bool)]
                run.result = export_trial(folder, str(pruned["trial_id"].iloc[0]), root / "exports")
                run.here = load(run.result.location).embed(TEXTS)
            except Exception as exc:  # reported by that family's test, not by all four
                run.error = exc
    finally:
        ray.shutdown()
    locations = {family: str(run.result.location) for family, run in runs.items() if run.error is None}
    script = (
        "import json, sys; from orchestrator.deploy import load; "
        "print(json.dumps({f: load(p).embed(json.loads(sys.argv[2])).tolist() for f, p in json.loads(sys.argv[1]).items()}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(locations), json.dumps(TEXTS)], cwd=REPO, capture_output=True, text=True, timeout=300
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for family, embeddings in json.loads(done.stdout.strip().splitlines()[-1]).items():
        runs[family].there = torch.tensor(embeddings)
    return runs


@pytest.mark.parametrize("family", FAMILIES)
def test_a_search_prunes_heads_ffn_and_layers_and_its_export_loads_in_a_fresh_process(family, family_runs):
    run = family_runs[family]
    if run.error is not None:
        raise run.error
    frame = run.frame
    assert (frame["status"] == "finished").all(), frame["error"].dropna().tolist()
    assert len(frame) == 2
    pruned = frame[~frame["baseline"].astype(bool)]
    assert (pruned["prune_heads_ratio"] > 0).all() and (pruned["prune_ffn_ratio"] > 0).all()
    assert (pruned["keep_layers"] == LAYERS - 1).all() and (pruned["encoder_layers"] == LAYERS - 1).all()
    teacher_params = int(frame[frame["baseline"].astype(bool)]["params"].iloc[0])
    assert (pruned["params"] < teacher_params).all()

    structure = run.result.manifest.architecture.encoder_structure
    assert structure is not None and len(structure["kept_layers"]) == LAYERS - 1
    assert all(len(heads) < HEADS for heads in structure["kept_heads"])
    assert run.there.shape == run.here.shape == (len(TEXTS), 32)
    # The same program and weights in both processes: equal up to float rounding of the same kernels.
    assert torch.allclose(run.there, run.here, atol=1e-5), float((run.there - run.here).abs().max())


def test_validate_refuses_pruning_a_model_no_family_fits_naming_its_class_and_the_knobs_that_still_apply(tmp_path, capsys):
    from orchestrator.cli import main
    from tests.tasks.text.tiny_bert import save_tiny_mpnet

    config = config_for(save_tiny_mpnet(tmp_path))
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "space.keep_layers" in error and "MPNetModel fits no encoder layout" in error
    assert "still apply to MPNetModel: bits 8 (int8), runtime" in error
    # Without the pruning knobs, the same model validates: int8, runtimes and distillation still apply.
    config["space"] = {"bits": {"choices": [32, 8]}, "kd_steps": {"choices": [0, 2]}}
    path.write_text(yaml.safe_dump(config))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err[-2000:]
