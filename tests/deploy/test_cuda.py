"""Candidates compressed on a GPU export too: weights are device-free, and load(device="cuda") runs them."""

from __future__ import annotations

import pytest
import torch

from orchestrator.compress import Recipe
from orchestrator.deploy import export_trial, load
from tests.conftest import requires_cuda
from tests.deploy.conftest import write_run

pytestmark = [pytest.mark.cuda, requires_cuda]

CUDA_RECIPES = {
    "cudafp32": Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=5),
    "cudafp16": Recipe(prune_method="structured", prune_ratio=0.3, bits=16, kd_steps=5),
}


@pytest.fixture(scope="module")
def cuda_exports(digits_task, teacher, tmp_path_factory):
    run = write_run(tmp_path_factory.mktemp("cuda-runs"), digits_task, teacher, CUDA_RECIPES, "cudafp32", device="cuda")
    dest = tmp_path_factory.mktemp("cuda-exports")
    return {trial_id: export_trial(run, trial_id, dest) for trial_id in CUDA_RECIPES}


def test_gpu_candidates_rebuild_within_tolerance_and_record_their_format(cuda_exports):
    fp32, fp16 = cuda_exports["cudafp32"].manifest, cuda_exports["cudafp16"].manifest
    assert fp32.architecture.weights_format == "float" and fp16.architecture.weights_format == "fp16"
    for manifest in (fp32, fp16):
        assert manifest.quality.passed
        assert abs(manifest.quality.rebuilt_value - manifest.quality.trial_value) <= manifest.quality.tolerance


@pytest.mark.parametrize("trial_id", list(CUDA_RECIPES))
def test_exports_load_on_the_gpu_and_agree_with_the_cpu(cuda_exports, val_inputs, trial_id):
    folder = cuda_exports[trial_id].location
    on_cpu = load(folder, runtime="torch").predict(val_inputs)
    on_gpu = load(folder, runtime="torch", device="cuda").predict(val_inputs)
    tol = 2e-2  # GPU convolutions run in TF32 (fp32) or fp16: close to the CPU, not equal
    torch.testing.assert_close(on_gpu, on_cpu, rtol=tol, atol=tol)
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).float().mean() >= 0.99
    default = load(folder, device="cuda")
    assert default.runtime == "eager"  # the .pt2 was exported on the CPU and pins its device
    assert torch.equal(default.predict(val_inputs), on_gpu)


def test_a_cpu_program_on_the_gpu_is_refused_with_the_alternative(cuda_exports):
    from orchestrator.errors import InputError

    with pytest.raises(InputError, match="use runtime='torch'"):
        load(cuda_exports["cudafp16"].location, runtime="torch_export", device="cuda")


def test_the_serving_logic_runs_on_the_gpu_where_there_is_one(cuda_exports, val_inputs):
    from orchestrator.deploy.serve import Predictor, ServeArgs

    predictor = Predictor(ServeArgs(model_path=cuda_exports["cudafp16"].location))
    assert predictor.info()["device"].startswith("cuda") and predictor.info()["runtime"] == "eager"
    (response,) = predictor.predict_requests([{"inputs": val_inputs[:2].tolist()}])
    assert len(response["outputs"]) == 2
