"""A model that takes named inputs goes through pruning, distillation, int8 and measurement untouched by the engine."""

from __future__ import annotations

import pytest
import torch

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.measure import measure
from orchestrator.tasks.batches import batch_size, run
from tests.tasks.named_inputs_task import NamedInputsTask


@pytest.fixture(scope="module")
def task():
    return NamedInputsTask()


def test_prune_distill_and_int8_keep_the_output_shape_and_shrink_the_model(task):
    teacher = task.teacher()
    recipe = Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=30, bits=8)
    compressed = apply_recipe(task, recipe, teacher=teacher)
    batch = task.example_batch(16)
    assert run(compressed.model, batch).shape == run(teacher, batch).shape == (16, 3)
    stages = {step.stage: step for step in compressed.record.steps}
    assert stages["prune"].details["params_after"] < stages["prune"].details["params_before"]
    assert stages["distill"].details["steps"] == 30
    assert stages["quantize"].details["mode"] == "dynamic" and stages["quantize"].details["quantized_layers"]
    quality = task.evaluate(compressed.model, "val")
    assert quality["value"] > 0.8 and quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]


def test_measurement_feeds_named_inputs_and_counts_examples(task):
    batch = task.example_batch(32)
    metrics = measure(task.teacher(), batch, threads=1, batch_repeats=3, latency_repeats=5, reference=task.teacher(), rounds=2)
    assert metrics.serving_batch_size == batch_size(batch) == 32
    assert metrics.throughput_sps > 0 and metrics.peak_mem_bytes > 0
    assert metrics.flops_per_sample and metrics.flops_per_sample > 0
    assert 0.5 < metrics.throughput_ratio_to_reference < 2.0  # the teacher against itself


def test_a_static_int8_request_falls_back_to_dynamic_with_the_reason(task):
    from orchestrator.compress import Int8Config
    from orchestrator.techniques import Context, apply_technique

    ctx = Context(task=task, device=torch.device("cpu"), teacher=task.teacher())
    model, record = apply_technique(NamedInputsTask().build_model().eval(), Int8Config(mode="static"), ctx)
    assert record.details["mode"] == "dynamic"
    assert any("named inputs" in f for f in record.fallbacks)


def test_half_precision_casts_float_inputs_and_keeps_token_ids_integer():
    from orchestrator.compress.quantize import CastInput

    class Lookup(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Embedding(10, 4)

        def forward(self, input_ids, weights):
            assert input_ids.dtype == torch.int64 and weights.dtype == torch.bfloat16
            return self.table(input_ids).sum(1) * weights

    wrapped = CastInput(Lookup().to(torch.bfloat16), torch.bfloat16)
    out = wrapped(input_ids=torch.tensor([[1, 2], [3, 4]]), weights=torch.ones(2, 1))
    assert out.dtype == torch.float32 and out.shape == (2, 4)
