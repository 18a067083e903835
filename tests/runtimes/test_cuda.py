"""The compiled runtime on CUDA: torchao int8 then torch.compile, measured on the GPU. Skipped without a GPU."""

from __future__ import annotations

import pytest

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.runtimes import CompiledModule, RuntimeFailed, kernel_archs
from tests.conftest import requires_cuda

pytestmark = [requires_cuda, pytest.mark.cuda]


@pytest.mark.parametrize("bits", [32, 8])
def test_compiled_runtime_on_cuda_builds_runs_and_keeps_quality(digits_task, teacher, bits):
    compressed = apply_recipe(digits_task, Recipe(runtime="compiled", bits=bits), device="cuda", teacher=teacher, serving_batch_size=64)
    model = compressed.model
    assert isinstance(model, CompiledModule) and next(model.inspect_module.parameters()).is_cuda
    techniques = [s.technique for s in compressed.record.steps]
    assert techniques[-1] == "compiled" and (bits == 32 or "int8_torchao" in techniques)
    assert kernel_archs(compressed.record.steps) is None
    fp32 = digits_task.evaluate(teacher, "val")["value"]
    assert digits_task.evaluate(model, "val")["value"] >= fp32 - 0.01


def test_onnxruntime_refuses_a_cuda_trial_with_the_reason(digits_task, teacher):
    with pytest.raises(RuntimeFailed, match="CPU provider only"):
        apply_recipe(digits_task, Recipe(runtime="onnxruntime"), device="cuda", teacher=teacher)
