"""Weights as plain tensors: quantized tensors, packed params and bf16 survive safetensors exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from orchestrator.compress import StepRecord
from orchestrator.deploy import ExportError, VerificationError
from orchestrator.deploy.manifest import Architecture
from orchestrator.deploy.weights import (
    build_module,
    decode_state,
    encode_state,
    read_weights,
    save_weights,
    weights_format,
)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        if a.is_quantized:
            return (
                b.is_quantized
                and a.qscheme() == b.qscheme()
                and torch.equal(a.int_repr(), b.int_repr())
                and torch.equal(a.dequantize(), b.dequantize())
            )
        return torch.equal(a, b) and a.dtype == b.dtype
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_quantized_per_tensor_per_channel_tuples_and_dtypes_round_trip():
    weight = torch.randn(4, 3)
    state = {
        "per_tensor": torch.quantize_per_tensor(torch.randn(5), 0.1, 3, torch.quint8),
        "per_channel": torch.quantize_per_channel(
            weight, torch.rand(4, dtype=torch.float64) + 0.01, torch.zeros(4, dtype=torch.int64), 0, torch.qint8
        ),
        "packed": (torch.quantize_per_tensor(weight, 0.05, 0, torch.qint8), None),
        "dtype": torch.qint8,
        "plain": torch.arange(6, dtype=torch.bfloat16),
    }
    tensors, layout = encode_state(state)
    assert all(not t.is_quantized for t in tensors.values())
    decoded = decode_state(tensors, layout)
    assert list(decoded) == list(state)
    for key in state:
        assert same(state[key], decoded[key]), key


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dynamic_int8_linear_state_round_trips_through_a_file(tmp_path):
    model = torch.ao.quantization.quantize_dynamic(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), {nn.Linear}, dtype=torch.qint8
    )
    save_weights(model, tmp_path / "w.safetensors", "int8_dynamic")
    fresh = torch.ao.quantization.quantize_dynamic(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)), {nn.Linear}, dtype=torch.qint8
    )
    state = read_weights(tmp_path / "w.safetensors")
    state._metadata = fresh.state_dict()._metadata
    fresh.load_state_dict(state)
    x = torch.randn(3, 8)
    assert torch.equal(fresh(x), model(x))


def test_the_same_weights_always_give_the_same_bytes(tmp_path):
    model = nn.Linear(4, 4)
    for name in ("a", "b", "c"):
        save_weights(model, tmp_path / f"{name}.safetensors", "float")
    assert (
        (tmp_path / "a.safetensors").read_bytes()
        == (tmp_path / "b.safetensors").read_bytes()
        == (tmp_path / "c.safetensors").read_bytes()
    )


def test_torchao_cuda_formats_are_refused_with_a_reason():
    steps = [StepRecord(stage="quantize", technique="int4_torchao", config={})]
    with pytest.raises(ExportError, match="torchao"):
        weights_format(steps)
    assert weights_format([StepRecord(stage="quantize", technique="int4_fake", config={})]) == "float"


def test_a_task_whose_architecture_differs_from_the_export_is_refused(digits_task):
    arch = Architecture(
        prune_technique="structured", layer_widths={"features.0": 3}, pruning_history=None, weights_format="float",
        input_shape=[1, 8, 8], teacher_fingerprint="0" * 64,
    )  # fmt: skip
    with pytest.raises(VerificationError, match="the task \\(or its arguments\\) differs"):
        build_module(digits_task, arch)
