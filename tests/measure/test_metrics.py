"""Measurement: parameter counts, deployed size, exact CPU peak memory, percentiles, device identity."""

from __future__ import annotations

import copy
import io
import statistics

import pytest
import torch
from torch import nn

from orchestrator.measure import metrics as M
from orchestrator.compress import Context, Int8Config, UnstructuredPruneConfig, apply_technique

FP32 = 4


@pytest.fixture(scope="module")
def int8_teacher(digits_task, teacher):
    ctx = Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))
    return apply_technique(copy.deepcopy(teacher), Int8Config(), ctx)[0]


def bn_params(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


# --- parameters and size ----------------------------------------------------------------------


def test_count_params_of_a_float_model(teacher):
    total, nonzero = M.count_params(teacher)
    assert total == sum(p.numel() for p in teacher.parameters())
    assert nonzero == sum(int(p.count_nonzero()) for p in teacher.parameters())


def test_count_params_sees_through_int8_packed_weights(int8_teacher, teacher):
    total, nonzero = M.count_params(int8_teacher)
    # BatchNorm is folded into the convolutions; every conv/linear weight and bias is still counted.
    assert total == sum(p.numel() for p in teacher.parameters()) - bn_params(teacher)
    assert 0.9 * total < nonzero <= total


def test_count_params_counts_pruned_zeros(digits_task, teacher):
    ctx = Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))
    pruned, record = apply_technique(copy.deepcopy(teacher), UnstructuredPruneConfig(ratio=0.7), ctx)
    total, nonzero = M.count_params(pruned)
    assert total == record.details["params"] and nonzero == record.details["nonzero_params"]
    assert nonzero < 0.35 * total


def test_serialized_size_of_int8_is_under_30_percent_of_fp32(int8_teacher, teacher):
    fp32 = M.serialized_size_bytes(teacher)
    assert M.serialized_size_bytes(int8_teacher) <= 0.30 * fp32


def test_serialized_size_is_the_torch_save_artifact(teacher):
    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)
    size = M.serialized_size_bytes(teacher)
    assert size == len(buffer.getvalue())
    assert M.weights_bytes(teacher) <= size <= M.weights_bytes(teacher) + 64 * 1024


def test_weights_bytes_by_hand():
    model = nn.Sequential(nn.Linear(10, 5), nn.BatchNorm1d(5))
    # Linear 10x5 + 5, BatchNorm weight/bias/mean/var 4x5 fp32 + one int64 counter
    assert M.weights_bytes(model) == (50 + 5 + 20) * FP32 + 8
    assert M.weights_bytes(model.to(torch.bfloat16)) == (50 + 5 + 20) * 2 + 8


# --- peak memory ------------------------------------------------------------------------------


def test_peak_memory_of_a_linear_layer_equals_the_hand_count():
    layer = nn.Linear(256, 512)
    batch = torch.randn(8, 256)
    weights = (512 * 256 + 512) * FP32
    assert M.peak_memory_bytes(layer, batch) == weights + 8 * 256 * FP32 + 8 * 512 * FP32


def test_peak_memory_of_an_mlp_is_between_hand_bounds():
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    batch = torch.randn(4, 64)
    weights = (64 * 128 + 128 + 128 * 10 + 10) * FP32
    inputs = 4 * 64 * FP32
    hidden = 4 * 128 * FP32
    lower = weights + inputs + hidden  # the first layer's output must exist
    upper = weights + inputs + 2 * hidden + 4 * 10 * FP32  # everything alive at once
    peak = M.peak_memory_bytes(model, batch)
    assert lower <= peak <= upper
    assert peak == weights + inputs + 2 * hidden  # exactly: Linear's output and ReLU's output coexist


def test_in_place_activation_adds_nothing():
    out_of_place = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
    in_place = copy.deepcopy(out_of_place)
    in_place[1].inplace = True
    batch = torch.randn(4, 64)
    assert M.peak_memory_bytes(out_of_place, batch) - M.peak_memory_bytes(in_place, batch) == 4 * 128 * FP32


def test_views_of_the_input_and_weights_allocate_nothing():
    flat = nn.Sequential(nn.Flatten(), nn.Linear(256, 512))  # Flatten of the input is a view
    batch = torch.randn(8, 1, 16, 16)
    assert M.peak_memory_bytes(flat, batch) == (512 * 256 + 512) * FP32 + 8 * 256 * FP32 + 8 * 512 * FP32

    class TransposedWeight(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(256, 512))

        def forward(self, x):
            return x @ self.weight.t().t()  # two views of the weight, then one matmul output

    assert M.peak_memory_bytes(TransposedWeight(), torch.randn(8, 256)) == (256 * 512 + 8 * 256 + 8 * 512) * FP32


def test_peak_memory_covers_the_weights_and_grows_with_batch(teacher, int8_teacher, digits_task):
    for model in (teacher, int8_teacher):
        small = M.peak_memory_bytes(model, digits_task.example_batch(16))
        large = M.peak_memory_bytes(model, digits_task.example_batch(256))
        assert small >= M.weights_bytes(model) + 16 * 64 * FP32
        assert large > small
    # the first conv's output alone, 64 channels of 8x8 fp32 per sample, must fit in the difference
    growth = M.peak_memory_bytes(teacher, digits_task.example_batch(256)) - M.peak_memory_bytes(
        teacher, digits_task.example_batch(16)
    )
    assert growth >= 240 * 64 * 8 * 8 * FP32


def test_int8_needs_less_memory_than_fp32(teacher, int8_teacher, digits_task):
    batch = digits_task.example_batch(64)
    assert M.peak_memory_bytes(int8_teacher, batch) < 0.5 * M.peak_memory_bytes(teacher, batch)


# --- flops, timing helpers, percentiles -------------------------------------------------------


def test_flops_per_sample_by_hand(teacher, digits_task):
    assert M.flops_per_sample(nn.Linear(16, 8), torch.randn(4, 16)) == 2 * 16 * 8
    conv = 2 * (64 * 1 * 9 * 8 * 8 + 128 * 64 * 9 * 8 * 8 + 256 * 128 * 9 * 4 * 4)
    linear = 2 * (1024 * 512 + 512 * 10)
    assert M.flops_per_sample(teacher, digits_task.example_batch(4)) == conv + linear


def test_flops_of_int8_ops_are_unknown(int8_teacher, digits_task):
    assert M.flops_per_sample(int8_teacher, digits_task.example_batch(4)) is None


def test_time_batches_returns_one_positive_time_per_repeat():
    times = M.time_batches(nn.Linear(4, 4), torch.randn(2, 4), repeats=5, warmup=1)
    assert len(times) == 5 and all(t > 0 for t in times)


@pytest.mark.parametrize(
    "values,q,expected",
    [
        ([1, 2, 3, 4, 5], 50, 3.0),
        ([5, 1, 4, 2, 3], 50, 3.0),  # order of the input does not matter
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4, 5], 95, 4.8),
        ([10, 20], 25, 12.5),
        ([7.0], 95, 7.0),
        ([1, 2, 3], 0, 1.0),
        ([1, 2, 3], 100, 3.0),
    ],
)
def test_percentile(values, q, expected):
    assert M.percentile(values, q) == pytest.approx(expected)


def test_percentile_median_agrees_with_statistics():
    values = [0.3, 0.1, 0.7, 0.2, 0.9, 0.4]
    assert M.percentile(values, 50) == pytest.approx(statistics.median(values))


# --- device identity and measure() ------------------------------------------------------------


def test_device_info_identifies_this_cpu():
    info = M.device_info("cpu")
    assert info.kind == "cpu"
    assert info.name and info.arch and info.capability
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    assert info.threads == torch.get_num_threads() >= 1


def test_default_threads(monkeypatch):
    monkeypatch.setenv("HEDGEROW_THREADS", "3")
    assert M.default_threads() == 3
    monkeypatch.delenv("HEDGEROW_THREADS")
    assert M.default_threads() == torch.get_num_threads()


def test_measure_returns_consistent_fields(teacher, digits_task):
    batch = digits_task.example_batch(32)
    threads = torch.get_num_threads()
    metrics = M.measure(teacher, batch, threads=threads, batch_repeats=5, latency_repeats=5)
    assert (metrics.params, metrics.nonzero_params) == M.count_params(teacher)
    assert metrics.size_bytes == M.serialized_size_bytes(teacher)
    assert metrics.peak_mem_bytes == M.peak_memory_bytes(teacher, batch)
    assert metrics.serving_batch_size == 32
    assert len(metrics.throughput_runs_sps) >= 5
    assert metrics.throughput_sps == pytest.approx(statistics.median(metrics.throughput_runs_sps), rel=1e-3)
    assert 0 < metrics.latency_p50_ms <= metrics.latency_p95_ms
    assert 0 < metrics.batch_latency_p50_ms <= metrics.batch_latency_p95_ms
    assert metrics.flops_per_sample == M.flops_per_sample(teacher, batch[:8])
    assert metrics.device == M.device_info("cpu") and metrics.device.threads == threads
    assert not teacher.training


def test_measure_uses_a_given_deployed_size(teacher, digits_task):
    metrics = M.measure(teacher, digits_task.example_batch(4), batch_repeats=2, latency_repeats=2, size_bytes=1234)
    assert metrics.size_bytes == 1234


def test_interleaved_throughput_measures_every_model_every_round():
    models = {"a": nn.Linear(8, 8), "b": nn.Sequential(nn.Linear(8, 8), nn.ReLU())}
    results = M.interleaved_throughput(models, torch.randn(4, 8), rounds=3, repeats=2)
    assert set(results) == {"a", "b"}
    assert all(len(runs) == 3 and all(r > 0 for r in runs) for runs in results.values())
