"""One name per runtime: exports written before the runtimes registry ('torch', 'onnx') still load, by either name."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from orchestrator.deploy import load
from orchestrator.errors import InputError
from orchestrator.runtimes import REGISTRY


def test_older_names_are_aliases_of_one_runtime_each():
    assert REGISTRY.names == ("eager", "compiled", "onnxruntime", "openvino")
    assert REGISTRY.canonical("torch") == "eager" and REGISTRY.canonical("onnx") == "onnxruntime"
    with pytest.raises(ValueError, match="did you mean 'onnx'"):
        REGISTRY.canonical("onx")


def test_an_export_with_the_older_names_in_its_manifest_still_loads(exports, tmp_path, val_inputs):
    folder = tmp_path / "old"
    shutil.copytree(exports["int8stat"].location, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["default_runtime"] == "eager"
    manifest["default_runtime"] = "torch"  # as exports named it before the registry
    manifest["serving_runtime"]["loader_runtime"] = "torch"
    (folder / "manifest.json").write_text(json.dumps(manifest))  # the manifest lists every file but itself
    old = load(folder)
    assert old.runtime == "eager" and old.manifest.default_runtime == "eager"
    assert torch.equal(old.predict(val_inputs), load(exports["int8stat"].location).predict(val_inputs))
    by_old_name = load(folder, runtime="onnx").predict(val_inputs)
    assert torch.equal(by_old_name, load(folder, runtime="onnxruntime").predict(val_inputs))


def test_an_unknown_runtime_names_the_ones_there_are(exports):
    with pytest.raises(InputError, match="runtime: expected one of auto, eager, compiled, onnxruntime, openvino, torch_export"):
        load(exports["fp32prun"].location, runtime="tensorrt")
