"""A text embedder (the real MiniLM, pruned and distilled) goes through export → load → embed strings → serve."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tests.deploy.conftest as deploy_conftest
from orchestrator.compress import Recipe
from orchestrator.deploy import export_trial, load
from orchestrator.deploy.serve import Predictor, ServeArgs
from orchestrator.tasks.text.encoder import tokenize, trim_padding
from tests.conftest import MINILM_CI, REPO

pytestmark = pytest.mark.slow
# Two of six layers each: every program is exported, compiled and checked as at full depth, in a third of the time.
RECIPES = {
    "fp32text": Recipe(keep_layers=2, prune_ffn_ratio=0.5, kd_steps=3, kd_batch_size=16, kd_learning_rate=1e-4),
    "int8text": Recipe(keep_layers=2, bits=8),
    "ortint8tx": Recipe(keep_layers=2, bits=8, runtime="onnxruntime"),
    "compint8tx": Recipe(keep_layers=2, bits=8, runtime="compiled"),
}
TEXTS = ["How do I open a file for reading?", "The with statement closes the file.", "unrelated: ☃"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_task):
    config = {
        **deploy_conftest.CONFIG,
        "task": {"name": "minilm", "args": MINILM_CI},
        "objective": {"metric": "ndcg_at_10", "max_quality_drop": 0.5},
        "space": {"keep_layers": {"choices": [2, 6]}, "bits": {"choices": [32, 8]}},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deploy_conftest, "CONFIG", config)
        run_dir = deploy_conftest.write_run(
            tmp_path_factory.mktemp("text"), minilm_task, minilm_task.teacher(), RECIPES, "fp32text"
        )
    dest = tmp_path_factory.mktemp("text-exports")
    return minilm_task, {trial_id: export_trial(run_dir, trial_id, dest) for trial_id in RECIPES}


def test_the_manifest_lists_the_tokenizer_and_a_variable_sequence_length(exported):
    _, results = exported
    manifest = results["fp32text"].manifest
    text = manifest.architecture.text
    assert text is not None and text.max_length == 32 and text.input_names == ["input_ids", "attention_mask"]
    listed = {f.path: f.sha256 for f in manifest.files}
    assert "tokenizer/tokenizer.json" in listed and len(listed["tokenizer/tokenizer.json"]) == 64
    assert manifest.architecture.named_inputs["input_ids"].variable_dims == [0]
    assert len(manifest.architecture.encoder_structure["kept_layers"]) == 2
    formats = {p.format: p for p in manifest.programs}
    assert formats["onnx"].written and "sequence length" in formats["onnx"].reason
    int8 = {p.format: p for p in results["int8text"].manifest.programs}
    assert int8["onnx_int8_dynamic"].written, int8["onnx_int8_dynamic"].reason


@pytest.fixture(scope="module")
def references(exported):
    """Embeddings of TEXTS by models built here, apart from any export: each trial's own model (rebuilt as the trial
    built it) and, for the int8 trial, the float model it quantized."""
    from orchestrator.threads import torch_threads
    from orchestrator.compress import apply_recipe
    from orchestrator.tasks.batches import run as run_model

    task, _ = exported
    inputs = trim_padding(tokenize(task.tokenizer, TEXTS, 32))  # padded to the longest text, as embed() pads
    recipes = {**RECIPES, "int8text float": Recipe.model_validate({**RECIPES["int8text"].model_dump(), "bits": 32})}
    out = {}
    for name in ("fp32text", "int8text", "int8text float"):
        with torch_threads(deploy_conftest.TRIAL_THREADS):  # as write_run built the trials
            model = apply_recipe(task, recipes[name], teacher=task.teacher()).model
            with torch.inference_mode():
                out[name] = run_model(model, inputs).float()
    return out


# The torch runtime of an int8 export is the trial's own int8 module, so float agreement applies; ONNX Runtime's
# int8 is a second quantization of the float model, so it is held to the float model at the int8 bound.
@pytest.mark.parametrize(
    ("trial_id", "runtime", "reference", "min_cosine"),
    [("fp32text", "torch", "fp32text", 0.9999), ("fp32text", "torch_export", "fp32text", 0.9999),
     ("fp32text", "onnx", "fp32text", 0.9999), ("int8text", "torch", "int8text", 0.9999),
     ("int8text", "onnx", "int8text float", 0.98)],
)  # fmt: skip
def test_each_runtime_embeds_strings_as_the_task_would(exported, references, trial_id, runtime, reference, min_cosine):
    _, results = exported
    model = load(results[trial_id].location, runtime=runtime)
    embeddings = model.embed(TEXTS)
    assert embeddings.shape == (3, 384) and torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-4)
    # Unit 384-d embeddings have components near 0.05: compare directions, text by text.
    cosine = torch.nn.functional.cosine_similarity(embeddings, references[reference], dim=1)
    assert cosine.min() >= min_cosine, cosine.tolist()
    assert torch.equal(model.predict(TEXTS), embeddings)


@pytest.fixture(scope="module")
def fresh_process(exported, tmp_path_factory) -> dict[str, tuple[str, torch.Tensor]]:
    """The float export embedding TEXTS and each runtime program's outputs on them, all in one fresh process (one
    interpreter start): {trial_id: (the runtime load chose, outputs)}."""
    task, results = exported
    folder = tmp_path_factory.mktemp("text-fresh-process")
    torch.save(dict(trim_padding(tokenize(task.tokenizer, TEXTS, 32))), folder / "inputs.pt")
    locations = {trial_id: str(results[trial_id].location) for trial_id in ("fp32text", "ortint8tx", "compint8tx")}
    script = (
        "import json, sys, torch; from orchestrator.deploy import load\n"
        "folder, locations, texts, runtimes = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), {}\n"
        "for trial_id, location in locations.items():\n"
        "    m = load(location)\n"
        "    out = m.embed(texts) if trial_id == 'fp32text' else m.predict(torch.load(folder + '/inputs.pt'))\n"
        "    torch.save(out, f'{folder}/{trial_id}.pt'); runtimes[trial_id] = m.runtime\n"
        "print(json.dumps(runtimes))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), json.dumps(locations), json.dumps(TEXTS)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    runtimes = json.loads(done.stdout.strip().splitlines()[-1])
    return {trial_id: (runtimes[trial_id], torch.load(folder / f"{trial_id}.pt")) for trial_id in locations}


def test_a_fresh_process_loads_the_export_and_embeds(exported, fresh_process):
    _, results = exported
    runtime, embeddings = fresh_process["fp32text"]
    here = load(results["fp32text"].location).embed(TEXTS)
    assert runtime == "torch_export" and torch.allclose(embeddings, here, atol=1e-6)


@pytest.mark.parametrize("trial_id", ["ortint8tx", "compint8tx"])
def test_each_runtime_program_round_trips_in_a_fresh_process(exported, fresh_process, trial_id):
    from orchestrator.compress import apply_recipe
    from orchestrator.tasks.batches import run as run_model

    task, results = exported
    recipe = RECIPES[trial_id]
    manifest = results[trial_id].manifest
    assert manifest.serving_runtime.name == recipe.runtime and manifest.serving_runtime.program == manifest.programs[0].file
    inputs = trim_padding(tokenize(task.tokenizer, TEXTS, 32))
    with torch.inference_mode():
        candidate = apply_recipe(task, recipe, teacher=task.teacher(), serving_batch_size=64).model
        expected = run_model(candidate, inputs)
    runtime, got = fresh_process[trial_id]
    assert runtime == recipe.runtime
    assert got.shape == expected.shape == (3, 384)
    assert float((got - expected).abs().max()) <= 1e-3  # the same program; float kernels may round differently


def test_the_serve_app_takes_text_and_refuses_what_is_not(exported):
    _, results = exported
    predictor = Predictor(ServeArgs(model_path=results["fp32text"].location))
    one, many, bad = predictor.predict_requests([{"inputs": TEXTS[0]}, {"inputs": TEXTS[1:]}, {"inputs": [1, 2]}])
    assert len(one["outputs"]) == 1 and len(many["outputs"]) == 2 and "string" in bad["error"]
    direct = load(results["fp32text"].location).embed(TEXTS)
    assert torch.allclose(torch.tensor(one["outputs"] + many["outputs"]), direct, atol=1e-5)
    assert predictor.info()["text"] == {"max_length": 32, "embedding": True}
