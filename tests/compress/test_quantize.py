"""Quantization: bf16 on CPU, int8 static (convs too) or dynamic, int4 on a CNN fake-quantized with packed size.

The CPU int4 kernel runs Linear layers only, so a model with convolutions is fake-quantized (quality only);
Linear-only models get the real kernel: tests/compress/test_weight_only.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from orchestrator.compress import CastInput, Context, HalfPrecisionConfig, Int4WeightOnlyConfig, Int8Config
from orchestrator.compress.prune import prunable_weights
from orchestrator.compress.quantize import fake_quantize, packed_int4_bytes
from tests.int8_bounds import assert_int8_classifies_like_float
from tests.tasks.user_task import BlobsTask


@pytest.fixture(scope="module")
def int8_static(digits_task, teacher):
    import copy

    from orchestrator.compress import apply_technique

    ctx = Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))
    return apply_technique(copy.deepcopy(teacher), Int8Config(), ctx)


# --- 16 bits ----------------------------------------------------------------------------------


def test_bf16_on_cpu_stays_close_to_fp32(compress, teacher, digits_task):
    model, record = compress(HalfPrecisionConfig())
    assert record.details["dtype"] == "bf16"
    assert record.details["capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(model, CastInput)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    inputs, _ = digits_task.data("val")
    with torch.inference_mode():
        reference, low = teacher(inputs), model(inputs)
    assert low.dtype == torch.float32, "the wrapper keeps a float32 interface"
    scale = reference.abs().max()
    assert (low - reference).abs().max() <= 0.05 * scale
    assert (low.argmax(1) == reference.argmax(1)).float().mean() >= 0.99
    assert not torch.equal(low, reference), "bf16 rounding should show somewhere"


def test_fp16_can_be_asked_for_explicitly(compress):
    model, record = compress(HalfPrecisionConfig(dtype="fp16"))
    assert record.technique == "fp16" and all(p.dtype == torch.float16 for p in model.parameters())


# --- int8 -------------------------------------------------------------------------------------


def test_int8_static_quantizes_convolutions_and_linears(int8_static):
    model, record = int8_static
    assert record.technique == "int8_static" and record.details["mode"] == "static"
    assert record.details["backend"] == "x86"
    assert record.details["quantized_layers"] == [
        "features.0",
        "features.3",
        "features.7",
        "classifier.1",
        "classifier.3",
    ]
    assert record.details["float_layers"] == [] and record.fallbacks == []
    kinds = {type(m).__module__ for m in model.modules()}
    assert any(k.startswith("torch.ao.nn.intrinsic.quantized") for k in kinds), "fused quantized conv+relu expected"
    assert not any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()), "no float conv/linear left"
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "BatchNorm folded into the convs"


def test_int8_static_keeps_accuracy_within_one_point(int8_static, teacher, digits_task):
    model, _ = int8_static
    for split in ("val", "test"):
        assert digits_task.evaluate(model, split)["value"] >= digits_task.evaluate(teacher, split)["value"] - 0.01


def test_int8_on_a_linear_only_model_is_dynamic():
    task = BlobsTask(n_features=16, n_classes=4)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    ctx = Context(task=task, teacher=mlp, device=torch.device("cpu"))
    from orchestrator.compress import apply_technique

    model, record = apply_technique(mlp, Int8Config(), ctx)
    assert record.technique == "int8_dynamic" and record.details["mode"] == "dynamic"
    assert record.details["quantized_layers"] == ["0", "2"] and record.details["float_layers"] == []
    assert all(type(model[i]).__module__.startswith("torch.ao.nn.quantized.dynamic") for i in (0, 2))
    inputs, _ = task.data("val")
    assert model(inputs).shape == (len(inputs), 4)


def test_int8_dynamic_outputs_stay_close_to_float():
    task = BlobsTask(n_features=16, n_classes=4)
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    inputs, labels = task.data("val")
    with torch.inference_mode():
        reference = mlp(inputs)
    from orchestrator.compress import apply_technique

    model, _ = apply_technique(
        mlp, Int8Config(mode="dynamic"), Context(task=task, teacher=mlp, device=torch.device("cpu"))
    )
    with torch.inference_mode():
        out = model(inputs)
    # torch's dynamic int8 rounds weights to ½/127 of a channel's range and activations to ½/127 (7 bits, reduce_range):
    # under 1% of a Linear's output scale, 1.6% for two; 5% of the largest logit leaves three times that.
    assert (out - reference).abs().max() <= 0.05 * reference.abs().max()
    assert_int8_classifies_like_float(out, reference, labels, n_layers=2)


class Untraceable(nn.Module):
    """A conv model with data-dependent control flow: FX cannot trace it, so static int8 cannot run."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        h = self.conv(x)
        if h.sum() > 0:
            h = h.relu()
        return self.head(h.flatten(1))


def test_int8_static_failure_falls_back_to_dynamic_and_says_which_layers_stay_float(digits_task, teacher):
    from orchestrator.compress import apply_technique

    model, record = apply_technique(
        Untraceable().eval(), Int8Config(), Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))
    )
    assert record.technique == "int8_dynamic"
    assert record.details["quantized_layers"] == ["head"] and record.details["float_layers"] == ["conv"]
    assert any(f.startswith("static FX quantization failed") for f in record.fallbacks)
    assert any(f.startswith("conv: stays float") for f in record.fallbacks)
    assert model(digits_task.example_batch(3)).shape == (3, 10)


# --- int4 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "numel,rows,cols,group,expected",
    [
        (64 * 128, 64, 128, 32, 64 * 128 // 2 + 64 * 4 * 2),  # 4 groups per row, fp16 scale each
        (10 * 100, 10, 100, 32, 500 + 10 * 4 * 2),  # 100 columns: 3 full groups and one partial
        (3 * 5, 3, 5, 32, 8 + 3 * 1 * 2),  # odd count: the last byte holds one nibble
    ],
)
def test_packed_int4_bytes_by_hand(numel, rows, cols, group, expected):
    assert packed_int4_bytes(numel, rows, cols, group) == expected


def test_packed_int4_bytes_scale_width():
    assert packed_int4_bytes(64, 2, 32, 16, scale_bytes=4) == 32 + 2 * 2 * 4


@pytest.mark.parametrize("group_size", [32, None])
def test_fake_quantize_has_at_most_16_levels_per_group(group_size):
    weight = torch.randn(6, 64, generator=torch.Generator().manual_seed(1))
    quantized = fake_quantize(weight, 4, group_size)
    assert quantized.shape == weight.shape
    group = group_size or 64
    for chunk in quantized.reshape(6, 64 // group, group).reshape(-1, group):
        levels = chunk.unique()
        assert len(levels) <= 16
        scale = chunk.abs().max() / 7  # symmetric: the largest magnitude maps to level 7
        assert torch.allclose(levels / scale, (levels / scale).round(), atol=1e-4)
        assert 8 <= len(levels)  # 32+ random values fill most of the 15 symmetric levels
    assert (quantized - weight).abs().max() <= weight.abs().max() / 7 / 2 + 1e-6


def test_fake_quantize_scales_each_group_by_its_own_maximum():
    weight = torch.tensor([[0.7, 0.1, -0.35, 0.05, 70.0, 10.0, -35.0, 1.0]])
    grouped = fake_quantize(weight, 4, group_size=4)
    # group 1 has scale 0.7/7 = 0.1, group 2 scale 10; -3.5 rounds half to even (-4), 0.5 and 0.1 round to 0
    assert torch.allclose(grouped, torch.tensor([[0.7, 0.1, -0.4, 0.0, 70.0, 10.0, -40.0, 0.0]]), atol=1e-5)
    per_row = fake_quantize(weight, 4)  # one scale of 10 for the whole row wipes out the small group
    assert torch.allclose(per_row, torch.tensor([[0.0, 0.0, 0.0, 0.0, 70.0, 10.0, -40.0, 0.0]]), atol=1e-5)


def test_fake_quantize_eight_bits_and_conv_shapes():
    weight = torch.randn(4, 3, 3, 3)
    quantized = fake_quantize(weight, 8)
    assert quantized.shape == weight.shape
    assert all(len(row.unique()) <= 256 for row in quantized.reshape(4, -1))
    assert (quantized - weight).abs().max() <= weight.abs().max() / 127


def test_fake_quantize_gradient_passes_straight_through():
    weight = torch.randn(4, 16, requires_grad=True)
    upstream = torch.randn(4, 16)
    (fake_quantize(weight, 4, 8) * upstream).sum().backward()
    assert torch.equal(weight.grad, upstream)


def test_int4_on_cpu_is_fake_quantized_on_a_cnn_marked_not_accelerated(compress, teacher, digits_task):
    model, record = compress(Int4WeightOnlyConfig(group_size=32))
    assert record.technique == "int4_fake" and record.details["accelerated"] is False
    assert record.fallbacks and "not accelerated on this device (cpu)" in record.fallbacks[0]
    assert "it has 3 convolution layers" in record.fallbacks[0]
    assert record.details["quantized_layers"] == [n for n, _ in prunable_weights(teacher)]
    for name, module in prunable_weights(model):
        flat = module.weight.reshape(module.weight.shape[0], -1)
        cols = flat.shape[1]
        padded = nn.functional.pad(flat, (0, (-cols) % 32)).reshape(flat.shape[0], -1, 32)
        assert max(len(g.unique()) for g in padded.reshape(-1, 32)) <= 16 + 1, name  # +1: the zero padding
    assert digits_task.evaluate(model, "val")["value"] >= digits_task.evaluate(teacher, "val")["value"] - 0.02


def test_int4_with_a_group_size_the_cpu_kernel_does_not_take_is_fake_quantized():
    from orchestrator.compress import apply_technique

    task = BlobsTask(n_features=64, n_classes=4)
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16)).eval()
    model, record = apply_technique(mlp, Int4WeightOnlyConfig(group_size=16), Context(task=task, teacher=mlp, device=torch.device("cpu")))
    assert record.technique == "int4_fake" and "takes groups of 32, 64, 128, 256, not 16" in record.fallbacks[0]
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))
    assert len(model[0].weight[0, :16].unique()) <= 16


def test_int4_packed_size_by_hand(compress, teacher):
    _, record = compress(Int4WeightOnlyConfig(group_size=32))
    expected = 0
    for name, tensor in list(teacher.named_parameters()) + list(teacher.named_buffers()):
        is_layer_weight = name.endswith("weight") and tensor.dim() >= 2
        if is_layer_weight:
            rows, cols = tensor.shape[0], tensor[0].numel()
            expected += math.ceil(tensor.numel() / 2) + rows * math.ceil(cols / 32) * 2
        else:
            expected += tensor.numel() * tensor.element_size()
    assert record.details["packed_size_bytes"] == expected
    fp32 = sum(t.numel() * t.element_size() for t in list(teacher.parameters()) + list(teacher.buffers()))
    assert record.details["packed_size_bytes"] <= 0.16 * fp32
