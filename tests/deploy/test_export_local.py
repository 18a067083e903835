"""Local export round trips: every weights format reproduces the model it exported, and says what it holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from orchestrator.compress import apply_recipe
from orchestrator.deploy import VerificationError, load
from orchestrator.deploy.manifest import Manifest, sha256_file
from orchestrator.threads import torch_threads
from tests.deploy.conftest import RECIPES, TRIAL_THREADS, run_cli


@pytest.fixture(scope="module")
def reference(digits_task, teacher, val_inputs):
    """Each candidate's outputs on the val split, from apply_recipe directly: what export must reproduce."""
    outputs = {}
    for trial_id, recipe in RECIPES.items():
        with torch_threads(TRIAL_THREADS):
            model = apply_recipe(digits_task, recipe, teacher=teacher).model
        with torch.inference_mode():
            outputs[trial_id] = model(val_inputs).float()
    return outputs


@pytest.mark.parametrize("trial_id", list(RECIPES))
def test_default_runtime_reproduces_the_model_exactly(exports, reference, val_inputs, trial_id):
    model = load(exports[trial_id].location)
    assert torch.equal(model.predict(val_inputs), reference[trial_id])


@pytest.mark.parametrize("trial_id", list(RECIPES))
def test_safetensors_weights_reload_into_the_architecture_exactly(exports, reference, val_inputs, trial_id):
    model = load(exports[trial_id].location, runtime="torch")
    assert torch.equal(model.predict(val_inputs), reference[trial_id])


def test_each_format_gets_the_programs_that_fit_and_says_why(exports):
    fp32, int8, bf16 = (exports[t].manifest for t in ("fp32prun", "int8stat", "bf16half"))
    written = lambda m: {p.format: p.written for p in m.programs}  # noqa: E731
    assert written(fp32) == {"torch_export": True, "onnx": True}
    assert written(int8) == {"torch_export": False, "onnx_int8_qdq": True}
    assert written(bf16) == {"torch_export": True, "onnx": False}
    assert fp32.default_runtime == bf16.default_runtime == "torch_export"
    assert int8.default_runtime == "eager"
    assert "torch.ao int8 packed parameters" in next(p.reason for p in int8.programs if p.format == "torch_export")
    assert "bf16" in next(p.reason for p in bf16.programs if p.format == "onnx")
    assert [a.architecture.weights_format for a in (fp32, int8, bf16)] == ["float", "int8_fx_static", "bf16"]


def test_pt2_program_is_exact_and_onnx_programs_are_close(exports, reference, val_inputs):
    fp32 = exports["fp32prun"]
    assert torch.equal(load(fp32.location, runtime="torch_export").predict(val_inputs), reference["fp32prun"])
    onnx = load(fp32.location, runtime="onnx").predict(val_inputs)
    torch.testing.assert_close(onnx, reference["fp32prun"], rtol=1e-4, atol=1e-4)
    int8 = exports["int8stat"]
    program = next(p for p in int8.manifest.programs if p.format == "onnx_int8_qdq")
    assert abs(program.quality - int8.manifest.quality.rebuilt_value) <= 0.02  # ONNX Runtime's own int8, not bit-equal
    agreement = (
        (load(int8.location, runtime="onnx").predict(val_inputs).argmax(1) == reference["int8stat"].argmax(1))
        .float()
        .mean()
    )
    assert agreement >= 0.97


def test_bf16_weights_stay_bf16_and_the_loaded_model_reproduces_the_rebuilt_outputs(
    exports, reference, val_inputs, digits_task, teacher
):
    from safetensors import safe_open

    folder = exports["bf16half"].location
    with safe_open(f"{folder}/model.safetensors", framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
    assert torch.bfloat16 in dtypes
    torch.testing.assert_close(load(folder).predict(val_inputs), reference["bf16half"], rtol=0, atol=0)
    # A 30%-pruned student, not the teacher: its logits differ, but it should still mostly agree on the digit.
    agreement = (reference["bf16half"].argmax(1) == teacher(val_inputs).argmax(1)).float().mean()
    assert agreement >= 0.9, f"the bf16 student agrees with the teacher on only {agreement:.0%} of validation digits"


def test_int8_weights_are_plain_int8_tensors_with_a_layout(exports):
    from safetensors import safe_open

    folder = exports["int8stat"].location
    with safe_open(f"{folder}/model.safetensors", framework="pt") as fh:
        metadata = fh.metadata()
        dtypes = {k: fh.get_tensor(k).dtype for k in fh.keys()}
    layout = json.loads(metadata["hedgerow.layout"])
    assert metadata["hedgerow.weights_format"] == "int8_fx_static"
    assert dtypes["features.0.weight"] == torch.int8 and dtypes["features.0.weight.__scales"] == torch.float64
    assert layout["features.0.weight"]["qscheme"] == "per_channel"
    packed = layout["classifier.1._packed_params._packed_params"]
    assert packed["kind"] == "tuple" and packed["items"][0]["kind"] == "quantized"
    size = (exports["int8stat"].manifest.file("model.safetensors")).size_bytes
    fp32_size = exports["fp32prun"].manifest.file("model.safetensors").size_bytes
    assert size < fp32_size / 3  # int8 values, not float ones


def test_manifest_lists_every_file_with_its_sha256_and_size(exports):
    for result in exports.values():
        folder = result.location
        manifest = Manifest.model_validate_json(open(f"{folder}/manifest.json").read())
        on_disk = sorted(p.name for p in __import__("pathlib").Path(folder).iterdir() if p.name != "manifest.json")
        assert [f.path for f in manifest.files] == on_disk
        for entry in manifest.files:
            path = f"{folder}/{entry.path}"
            assert entry.sha256 == sha256_file(__import__("pathlib").Path(path))
            assert entry.size_bytes == __import__("os").path.getsize(path)


def test_manifest_records_provenance_cost_and_versions(exports, run_dir):
    m = exports["int8stat"].manifest
    assert m.run_id == run_dir.name and m.trial_id == "int8stat" and m.recipe == RECIPES["int8stat"]
    assert m.task.name == "digits" and m.quality.passed and m.quality.rebuilt_value == m.quality.trial_value
    assert m.deployment.instance_type and m.deployment.monthly_usd and m.deployment.catalog_as_of
    assert m.deployment.hourly_replicas and len(m.deployment.hourly_replicas) == 24
    assert {"torch", "hedgerow", "onnxruntime", "safetensors"} <= {k for k, v in m.versions.items() if v}
    assert len(m.architecture.teacher_fingerprint) == 64


def test_serve_config_is_in_serve_deploy_format_and_autoscales_on_the_hourly_profile(exports):
    result = exports["int8stat"]
    config = yaml.safe_load(open(f"{result.location}/serve_config.yaml"))
    (app,) = config["applications"]
    assert app["import_path"] == "orchestrator.deploy.serve:app"
    assert app["args"]["model_path"] == result.location and app["args"]["max_batch_size"] == 64
    (deployment,) = app["deployments"]
    hourly = result.manifest.deployment.hourly_replicas
    auto = deployment["autoscaling_config"]
    assert auto["max_replicas"] > auto["min_replicas"] >= 1
    assert auto["max_replicas"] // max(hourly) == auto["min_replicas"] // min(hourly)  # same copies per instance
    assert deployment["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0}  # a core per replica (smt_yield 1): both its vCPUs
    assert "num_replicas" not in deployment


def test_readme_tells_a_deployer_how_to_load_and_serve(exports):
    text = open(f"{exports['fp32prun'].location}/README.md").read()
    assert "from orchestrator.deploy import load" in text and "serve deploy serve_config.yaml" in text
    assert exports["fp32prun"].location in text


def test_a_tampered_file_fails_verification_on_load(exports, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(exports["fp32prun"].location, copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=r"model.safetensors: refused: SHA-256 .* does not match the manifest"):
        load(copy)


def test_a_missing_file_fails_verification_on_load(exports, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(exports["bf16half"].location, copy)
    (copy / "model.pt2").unlink()
    with pytest.raises(VerificationError, match="model.pt2: missing"):
        load(copy)


def test_export_verb_defaults_to_the_recommended_trial_and_prints_the_folder(run_dir, tmp_path, capsys, monkeypatch):
    stale = tmp_path / run_dir.name / ".int8stat.partial-0badf00d"  # what a killed export leaves: no lock on it
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half written")
    monkeypatch.setenv("HEDGEROW_SERVE_TOKEN", "s3cr3t-serve-token")
    status, out, err = run_cli(["export", str(run_dir), "--dest", str(tmp_path), "--require-token"], capsys)
    assert status == 0, err
    folder = out.strip().splitlines()[-1]
    assert folder == str(tmp_path / run_dir.name / "int8stat")
    assert (tmp_path / run_dir.name / "int8stat" / "manifest.json").is_file()
    assert not [p for p in (tmp_path / run_dir.name).iterdir() if p.name.startswith(".")]  # no staging left behind
    assert f"removed {stale}: the unfinished export of an interrupted run" in err
    # --require-token: the Serve config names the variable for Ray to expand on the node, never the token itself
    serve = yaml.safe_load((Path(folder) / "serve_config.yaml").read_text())
    app = serve["applications"][0]
    assert app["args"]["require_token"] is True
    assert app["runtime_env"]["env_vars"]["HEDGEROW_SERVE_TOKEN"] == "${HEDGEROW_SERVE_TOKEN}"
    assert not [p for p in Path(folder).rglob("*") if p.is_file() and b"s3cr3t-serve-token" in p.read_bytes()]
    assert "s3cr3t-serve-token" not in out + err
    peak = re.search(r"peak resident memory (\d+\.\d\d) GiB", err)
    assert peak and 0 < float(peak.group(1)) < 64, err[-2000:]  # this process's own peak, in GiB


def test_int8_weights_refuse_a_gpu_and_auto_picks_the_cpu(exports):
    from orchestrator.errors import InputError

    with pytest.raises(InputError, match="run on the CPU only"):
        load(exports["int8stat"].location, device="cuda")
    assert load(exports["int8stat"].location, device="auto").device.type == "cpu"
