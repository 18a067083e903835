"""A model fed named tensors is exported (safetensors, torch.export, ONNX) and loads back to the same outputs."""

from __future__ import annotations

import pytest
import torch

import tests.deploy.conftest as deploy_conftest
from orchestrator.compress import Recipe
from orchestrator.deploy import export_trial, load
from tests.int8_bounds import assert_int8_classifies_like_float
from tests.tasks.named_inputs_task import NamedInputsTask

pytestmark = pytest.mark.slow
RECIPES = {
    "fp32named": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=5),
    "int8named": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=5, bits=8),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    task = NamedInputsTask()
    config = {**deploy_conftest.CONFIG, "task": {"name": "tests.tasks.named_inputs_task:make_task"}}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deploy_conftest, "CONFIG", config)
        run_dir = deploy_conftest.write_run(tmp_path_factory.mktemp("named"), task, task.teacher(), RECIPES, "fp32named")
    dest = tmp_path_factory.mktemp("named-exports")
    return task, {trial_id: export_trial(run_dir, trial_id, dest) for trial_id in RECIPES}


def test_the_manifest_describes_each_named_input(exported):
    task, results = exported
    arch = results["fp32named"].manifest.architecture
    assert arch.input_shape == [] and sorted(arch.named_inputs) == ["features", "mask"]
    assert arch.named_inputs["features"].shape == [12] and arch.named_inputs["mask"].dtype == "float32"


@pytest.mark.parametrize(("trial_id", "runtime"), [("fp32named", "torch"), ("fp32named", "torch_export"),
                                                    ("fp32named", "onnx"), ("int8named", "torch"), ("int8named", "onnx")])  # fmt: skip
def test_each_runtime_loads_and_runs_named_inputs(exported, trial_id, runtime):
    task, results = exported
    result = results[trial_id]
    programs = {p.format: p for p in result.manifest.programs}
    if runtime == "onnx" and not any(p.written for f, p in programs.items() if f.startswith("onnx")):
        pytest.fail(f"no ONNX program was written: {[p.reason for p in programs.values()]}")
    model = load(result.location, runtime=runtime)
    inputs, labels = task.data("val")
    outputs = model.predict(inputs)
    reference = load(result.location, runtime="torch").predict(inputs)
    assert outputs.shape == (len(inputs["features"]), 3)
    if trial_id == "int8named" and runtime == "onnx":
        # ONNX Runtime's own int8 program of the float model before quantization: judged by classes against that
        # float model (fp32named is the same recipe without int8, rebuilt alike), within int8's rounding (3 Linears).
        float_logits = load(results["fp32named"].location, runtime="torch").predict(inputs)
        assert_int8_classifies_like_float(outputs, float_logits, labels, n_layers=3)
    else:
        # The same float32 program (0), or ONNX Runtime's float kernels, which differ only in summation order.
        tolerance = 0 if runtime != "onnx" else 1e-4 * float(reference.abs().max())
        assert (outputs - reference).abs().max() <= tolerance


def test_predict_names_what_is_missing(exported):
    _, results = exported
    model = load(results["fp32named"].location)
    with pytest.raises(ValueError, match=r"expected named inputs \['features', 'mask'\]"):
        model.predict({"features": torch.zeros(2, 12)})
    with pytest.raises(ValueError, match="input 'mask': expected \\(N, 12\\)"):
        model.predict({"features": torch.zeros(2, 12), "mask": torch.zeros(2, 5)})


def test_the_serve_logic_takes_named_inputs_and_answers_each_request(exported):
    from orchestrator.deploy.serve import Predictor, ServeArgs

    task, results = exported
    location = results["fp32named"].location
    predictor = Predictor(ServeArgs(model_path=location, device="cpu"))
    inputs, _ = task.data("val")
    one = {name: value[0].tolist() for name, value in inputs.items()}  # a single example per name
    many = {name: value[1:4].tolist() for name, value in inputs.items()}
    bad = {"features": inputs["features"][:2].tolist()}  # the mask is missing
    answers = predictor.predict_requests([{"inputs": one}, {"inputs": bad}, {"inputs": many}])
    expected = load(location).predict({name: value[:4] for name, value in inputs.items()})
    assert torch.allclose(torch.tensor(answers[0]["outputs"]), expected[:1])
    assert "expected a JSON object" in answers[1]["error"] and "'mask'" in answers[1]["error"]
    assert torch.allclose(torch.tensor(answers[2]["outputs"]), expected[1:4])
    assert sorted(predictor.info()["named_inputs"]) == ["features", "mask"]
