"""Exports of compiled and ONNX Runtime candidates: the runtime's own program, loaded in a fresh process, as measured."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.deploy import load
from orchestrator.tasks.batches import run as run_model
from orchestrator.threads import torch_threads
from tests.deploy.conftest import TRIAL_THREADS, write_run

pytestmark = pytest.mark.slow

PRUNED = dict(prune_method="structured", prune_ratio=0.5, kd_steps=5)
RECIPES = {
    "eagerint8": Recipe(bits=8, **PRUNED),
    "compfp32": Recipe(runtime="compiled", **PRUNED),
    "compint8": Recipe(runtime="compiled", bits=8, **PRUNED),
    "ortfp32": Recipe(runtime="onnxruntime", **PRUNED),
    "ortint8": Recipe(runtime="onnxruntime", bits=8, **PRUNED),
    "ovfp32": Recipe(runtime="openvino", **PRUNED),
    "ovint8": Recipe(runtime="openvino", bits=8, **PRUNED),
}
# How far a program loaded in another process may drift from the in-memory candidate, on logits.
# OpenVINO: the same IR, compiled again with its default thread count; float32 sums may split differently (as ORT's).
TOLERANCE = {"eager": 0.0, "compiled": 1e-4, "onnxruntime": 1e-4, "openvino": 1e-4}


@pytest.fixture(scope="module")
def runtime_exports(tmp_path_factory, digits_task, teacher):
    from orchestrator.deploy import export_trial

    run = write_run(tmp_path_factory.mktemp("runtime-runs"), digits_task, teacher, RECIPES, recommended="ortint8")
    dest = tmp_path_factory.mktemp("runtime-exports")
    return {trial_id: export_trial(run, trial_id, dest) for trial_id in RECIPES}


@pytest.fixture(scope="module")
def fresh_process(runtime_exports, digits_task, tmp_path_factory):
    """Every export loaded and run in one fresh process (one interpreter start for all): {trial_id: (runtime, outputs)}."""
    folder = tmp_path_factory.mktemp("fresh-process")
    torch.save(digits_task.data("val")[0][:200], folder / "inputs.pt")
    locations = {trial_id: str(result.location) for trial_id, result in runtime_exports.items()}
    script = textwrap.dedent(
        f"""
        import json, torch
        from orchestrator.deploy import load
        torch.set_num_threads({TRIAL_THREADS})
        inputs, runtimes = torch.load({str(folder / 'inputs.pt')!r}), {{}}
        for trial_id, location in {locations!r}.items():
            model = load(location)  # each export as a deployment would load it: nothing else in memory from the trial
            torch.save(model.predict(inputs), {str(folder)!r} + f"/{{trial_id}}.pt")
            runtimes[trial_id] = model.runtime
        print("RUNTIMES", json.dumps(runtimes))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runtimes = json.loads(done.stdout.split("RUNTIMES", 1)[1])
    return {trial_id: (runtimes[trial_id], torch.load(folder / f"{trial_id}.pt")) for trial_id in RECIPES}


@pytest.mark.parametrize("trial_id", list(RECIPES))
def test_round_trip_in_a_fresh_process_matches_the_in_memory_candidate(fresh_process, digits_task, teacher, trial_id):
    recipe = RECIPES[trial_id]
    inputs = digits_task.data("val")[0][:200]
    with torch_threads(TRIAL_THREADS):
        candidate = apply_recipe(digits_task, recipe, teacher=teacher, serving_batch_size=64).model
        with torch.inference_mode():
            expected = run_model(candidate, inputs).float()
    loaded_runtime, got = fresh_process[trial_id]
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= TOLERANCE[recipe.runtime], trial_id
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.99
    assert loaded_runtime == recipe.runtime


def test_manifest_records_the_runtime_its_version_settings_and_program(runtime_exports):
    import onnxruntime

    manifests = {trial_id: result.manifest for trial_id, result in runtime_exports.items()}
    ort = manifests["ortint8"].serving_runtime
    assert (ort.name, ort.library, ort.version, ort.loader_runtime) == ("onnxruntime", "onnxruntime", onnxruntime.__version__, "onnxruntime")
    assert ort.settings["int8"] == "static" and "quantize_static" in ort.settings["how"] and "reduce_range" in ort.settings["how"]
    assert ort.settings["kernel_archs"] == ["x86_64", "arm64"] and ort.startup_seconds > 0
    comp = manifests["compint8"].serving_runtime
    assert (comp.name, comp.version, comp.loader_runtime) == ("compiled", torch.__version__, "compiled")
    assert comp.settings["static_batch"] == 64 and comp.settings["freezing"] is True
    assert manifests["compint8"].default_runtime == "compiled" and manifests["ortfp32"].default_runtime == "onnxruntime"
    assert manifests["eagerint8"].serving_runtime.name == "eager"
    for trial_id, manifest in manifests.items():
        files = {entry.path for entry in manifest.files}
        assert "model.safetensors" in files, trial_id
        if RECIPES[trial_id].runtime != "eager":
            (program,) = manifest.programs
            assert program.written and program.file in files and program.quality is not None
            assert program.file == manifest.serving_runtime.program
            assert manifest.architecture.weights_format == "float", "the reference weights are the float model"


def test_pt2e_program_ships_int8_weights_only(runtime_exports):
    manifest = runtime_exports["compint8"].manifest
    sizes = {entry.path: entry.size_bytes for entry in manifest.files}
    (program,) = manifest.programs
    assert program.format == "torch_export_pt2e_int8" and program.file == "model.int8.pt2"
    assert sizes["model.int8.pt2"] < sizes["model.safetensors"] / 2  # unused float weights were stripped


def test_the_float_reference_weights_load_with_runtime_torch(runtime_exports, digits_task):
    inputs = digits_task.data("val")[0][:64]
    compiled = load(runtime_exports["compint8"].location, runtime="torch").predict(inputs)
    onnx_int8 = load(runtime_exports["ortint8"].location).predict(inputs)
    assert compiled.shape == onnx_int8.shape == (64, 10)
    agree = (compiled.argmax(1) == onnx_int8.argmax(1)).float().mean()
    assert agree >= 0.9  # the float reference and the int8 program it became


def test_manifest_json_names_the_runtime(runtime_exports):
    from pathlib import Path

    data = json.loads((Path(runtime_exports["ortfp32"].location) / "manifest.json").read_text())
    assert data["serving_runtime"]["name"] == "onnxruntime" and data["recipe"]["runtime"] == "onnxruntime"


def test_openvino_export_lists_its_ir_with_checksums_and_records_how_it_was_built(runtime_exports):
    from pathlib import Path

    import openvino

    for trial_id, stem, fmt in (("ovfp32", "model", "openvino"), ("ovint8", "model.int8", "openvino_int8")):
        manifest = runtime_exports[trial_id].manifest
        entries = {entry.path: entry for entry in manifest.files}
        assert {f"{stem}.xml", f"{stem}.bin"} <= set(entries), trial_id
        assert all(len(entries[f"{stem}{ext}"].sha256) == 64 for ext in (".xml", ".bin"))
        (program,) = manifest.programs
        assert (program.format, program.file, program.written) == (fmt, f"{stem}.xml", True)
        served = manifest.serving_runtime
        assert (served.name, served.library, served.version, served.loader_runtime) == ("openvino", "openvino", openvino.__version__, "openvino")
        assert served.settings["inference_precision"] == "f32" and served.settings["performance_hint"] == "LATENCY"
        assert manifest.default_runtime == "openvino"
    int8 = runtime_exports["ovint8"].manifest
    assert "NNCF" in int8.serving_runtime.settings["how"] and int8.serving_runtime.settings["kernel_archs"] == ["x86_64"]
    sizes = {entry.path: entry.size_bytes for entry in int8.files}
    assert sizes["model.int8.bin"] < sizes["model.safetensors"] / 2  # int8 weights, one byte each
    readme = (Path(runtime_exports["ovint8"].location) / "README.md").read_text()
    assert "| `model.int8.xml` | OpenVINO int8 program" in readme and "| `model.int8.bin` | OpenVINO int8 IR weights" in readme


def test_an_openvino_export_whose_weights_changed_or_are_unlisted_is_refused(runtime_exports, tmp_path):
    import shutil
    from pathlib import Path

    from orchestrator.deploy import VerificationError

    source = Path(runtime_exports["ovint8"].location)
    tampered = shutil.copytree(source, tmp_path / "tampered")
    weights = tampered / "model.int8.bin"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="model.int8.bin"):
        load(tampered)
    unlisted = shutil.copytree(source, tmp_path / "unlisted")
    manifest = json.loads((unlisted / "manifest.json").read_text())
    manifest["files"] = [entry for entry in manifest["files"] if entry["path"] != "model.int8.bin"]
    (unlisted / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VerificationError, match="model.int8.bin: not listed"):
        load(unlisted)  # the IR would read weights nothing verified


def test_serve_answers_from_the_openvino_program_on_the_threads_it_is_given(runtime_exports, digits_task):
    from orchestrator.deploy.serve import Predictor, ServeArgs

    folder = runtime_exports["ovint8"].location
    inputs = digits_task.data("val")[0][:4]
    with torch_threads(TRIAL_THREADS):
        predictor = Predictor(ServeArgs(model_path=folder, threads=1))
        responses = predictor.predict_requests([{"inputs": inputs[:3].tolist()}, {"inputs": inputs[3].tolist()}])
        expected = load(folder).predict(inputs)
    assert predictor.info()["runtime"] == "openvino"
    assert predictor.model.module.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    # the same int8 program on the same inputs: only float32 sums at its edges may round differently per batch shape
    assert torch.allclose(torch.tensor(responses[0]["outputs"]), expected[:3], atol=TOLERANCE["openvino"])
    assert torch.allclose(torch.tensor(responses[1]["outputs"]), expected[3:4], atol=TOLERANCE["openvino"])
