"""CUDA paths: fp16, torchao int8 and int4, 2:4 sparse kernels, CUDA peak memory. Skipped without a GPU."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from orchestrator.measure import metrics as M
from orchestrator.compress import (
    Context,
    HalfPrecisionConfig,
    Int4WeightOnlyConfig,
    Int8Config,
    Recipe,
    apply_recipe,
    apply_technique,
)
from tests.conftest import requires_cuda

pytestmark = [requires_cuda, pytest.mark.cuda]


@pytest.fixture
def cuda_ctx(digits_task, teacher):
    return Context(task=digits_task, teacher=teacher, device=torch.device("cuda"))


def val_accuracy(task, model) -> float:
    return task.evaluate(model, "val")["value"]


def test_fp16_on_cuda(cuda_ctx, digits_task, teacher):
    model, record = apply_technique(copy.deepcopy(teacher), HalfPrecisionConfig(), cuda_ctx)
    assert record.technique == "fp16" and record.details["capability"] is None
    assert all(p.dtype == torch.float16 and p.is_cuda for p in model.parameters())
    inputs, _ = digits_task.data("val")
    with torch.inference_mode():
        reference, half = teacher(inputs), model(inputs.cuda()).cpu()
    assert half.dtype == torch.float32
    assert (half - reference).abs().max() <= 0.01 * reference.abs().max()
    assert val_accuracy(digits_task, model) >= val_accuracy(digits_task, teacher) - 0.005


def test_torchao_int8_on_cuda_quantizes_linears_and_reports_convs_as_float(cuda_ctx, digits_task, teacher):
    model, record = apply_technique(copy.deepcopy(teacher), Int8Config(), cuda_ctx)
    assert record.technique == "int8_torchao" and record.details["accelerated"] is True
    assert record.details["quantized_layers"] == ["classifier.1", "classifier.3"]
    assert record.details["float_layers"] == ["features.0", "features.3", "features.7"]
    assert len(record.fallbacks) == 3 and all("stays float" in f for f in record.fallbacks)
    assert type(model.classifier[1].weight) not in (torch.Tensor, nn.Parameter), (
        "weight should be a torchao int8 tensor"
    )
    assert val_accuracy(digits_task, model) >= val_accuracy(digits_task, teacher) - 0.01


def test_torchao_int4_on_cuda_is_accelerated_on_eligible_linears(cuda_ctx, digits_task, teacher):
    model, record = apply_technique(copy.deepcopy(teacher), Int4WeightOnlyConfig(group_size=32), cuda_ctx)
    assert record.technique == "int4_torchao" and record.details["accelerated"] is True
    assert record.details["quantized_layers"] == ["classifier.1"]  # 512 -> 10 has out_features % 8 != 0
    assert "classifier.3" in record.details["float_layers"]
    assert type(model.model.classifier[1].weight) not in (torch.Tensor, nn.Parameter), (
        "weight should be a torchao int4 tensor"
    )
    assert val_accuracy(digits_task, model) >= val_accuracy(digits_task, teacher) - 0.02


def test_two_four_with_16_bits_converts_to_sparse_kernels(digits_task, teacher):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("2:4 sparse kernels need compute capability 8.0 or newer")
    compressed = apply_recipe(
        digits_task, Recipe(prune_method="semi_structured_2_4", bits=16), device="cuda", teacher=teacher
    )
    record = compressed.record
    prune = record.steps[0]
    assert prune.details["pruned_layers"] == ["classifier.1"]
    assert any(f.startswith("classifier.3: kept dense") for f in record.fallbacks)
    assert record.notes == ["2:4 sparse kernels on 1 Linear layers: classifier.1"]
    weight = compressed.model.model.classifier[1].weight
    assert "SparseSemiStructured" in type(weight).__name__
    dense = weight.to_dense().reshape(weight.shape[0], -1, 4)
    assert torch.all((dense != 0).sum(dim=-1) <= 2)
    assert val_accuracy(digits_task, compressed.model) >= 0.9


def test_two_four_with_8_bits_keeps_weights_dense_and_says_so(digits_task, teacher):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("2:4 sparse kernels need compute capability 8.0 or newer")
    compressed = apply_recipe(
        digits_task, Recipe(prune_method="semi_structured_2_4", bits=8), device="cuda", teacher=teacher
    )
    assert "2:4 weights kept dense" in compressed.record.notes[-1]


def test_cuda_peak_memory_counts_weights_and_activations():
    layer = nn.Linear(1024, 2048).cuda()
    batch = torch.randn(64, 1024, device="cuda")
    with torch.inference_mode():
        layer(batch)  # let cuBLAS allocate its workspace before measuring
    weights = (1024 * 2048 + 2048) * 4
    lower = weights + batch.numel() * 4 + 64 * 2048 * 4
    peak = M.peak_memory_bytes(layer, batch)
    assert lower <= peak <= lower + 1024 * 1024
    assert M.peak_memory_bytes(layer, torch.randn(512, 1024, device="cuda")) > peak


def test_device_info_names_the_gpu():
    info = M.device_info("cuda")
    major, minor = torch.cuda.get_device_capability()
    assert info.kind == "cuda" and info.name == torch.cuda.get_device_name()
    assert info.capability == f"sm_{major}{minor}"


@pytest.mark.parametrize("bits", [8, 4, 16])
def test_measure_handles_every_cuda_quantized_model(digits_task, teacher, bits):
    """measure() on torchao's tensor subclasses: params counted, weights' bytes from their inner tensors."""
    compressed = apply_recipe(digits_task, Recipe(bits=bits), device="cuda", teacher=teacher)
    metrics = M.measure(compressed.model, digits_task.example_batch(256), batch_repeats=3, latency_repeats=5)
    assert metrics.device.kind == "cuda" and metrics.throughput_sps > 0
    assert metrics.params >= 0.99 * sum(p.numel() for p in teacher.parameters())
    assert 0 < M.weights_bytes(compressed.model) < M.weights_bytes(teacher)
    assert metrics.peak_mem_bytes > M.weights_bytes(compressed.model)
