"""Pruning: structured (channels really removed), unstructured (permanent zeros), 2:4 (CUDA only)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from orchestrator.compress import SemiStructured24Config, StructuredPruneConfig, UnstructuredPruneConfig
from orchestrator.compress.prune import prunable_weights, sparse_storage_bytes, two_four_mask
from orchestrator.errors import UnsupportedOnDevice


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    modules = list(model.modules())
    return [(m, modules[i + 1]) for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def structured_50(digits_task, teacher):
    from orchestrator.compress import Context, apply_technique

    ctx = Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))
    return apply_technique(copy.deepcopy(teacher), StructuredPruneConfig(ratio=0.5), ctx)


# --- structured -------------------------------------------------------------------------------


def test_structured_shapes_are_consistent_and_the_model_runs(structured_50, digits_task):
    model, _ = structured_50
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for prev, nxt in zip(convs, convs[1:]):
        assert nxt.in_channels == prev.out_channels
        assert nxt.weight.shape[1] == prev.weight.shape[0]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[0].in_features == convs[-1].out_channels * 2 * 2
    assert linears[1].in_features == linears[0].out_features
    out = model(digits_task.example_batch(5))
    assert out.shape == (5, 10) and torch.isfinite(out).all()


def test_structured_halves_widths_and_really_drops_params_and_macs(structured_50, teacher):
    model, record = structured_50
    assert n_params(model) <= 0.30 * n_params(teacher)
    assert record.details["params_before"] == n_params(teacher)
    assert record.details["params_after"] == n_params(model)
    assert record.details["macs_after"] <= 0.30 * record.details["macs_before"]
    assert record.details["layer_widths"] == {
        "features.0": 32, "features.3": 64, "features.7": 128, "classifier.1": 256, "classifier.3": 10,
    }  # fmt: skip


def test_structured_batchnorm_shrinks_with_its_conv_keeping_the_same_channels(structured_50, teacher):
    model, record = structured_50
    removed = {name: set(idxs) for name, _, idxs in record.details["pruning_history"]}
    teacher_pairs = dict(
        zip([n for n, m in teacher.named_modules() if isinstance(m, nn.Conv2d)], conv_bn_pairs(teacher))
    )
    for name, (conv, bn) in zip(teacher_pairs, conv_bn_pairs(model)):
        t_conv, t_bn = teacher_pairs[name]
        keep = [i for i in range(t_conv.out_channels) if i not in removed[name]]
        assert bn.num_features == conv.out_channels == len(keep)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(getattr(bn, attr), getattr(t_bn, attr)[keep]), (name, attr)
        assert torch.equal(conv.bias, t_conv.bias[keep])


def test_structured_leaves_the_output_layer_whole(structured_50, teacher):
    model, record = structured_50
    out, t_out = model.classifier[3], teacher.classifier[3]
    assert out.out_features == 10
    assert torch.equal(out.bias, t_out.bias)
    removed = {name: set(idxs) for name, _, idxs in record.details["pruning_history"]}["classifier.1"]
    kept_inputs = [i for i in range(t_out.in_features) if i not in removed]
    assert torch.equal(out.weight, t_out.weight[:, kept_inputs])


def test_structured_does_not_touch_the_original(structured_50, teacher, digits_task):
    assert teacher.features[0].out_channels == 64
    assert digits_task.evaluate(teacher, "val")["value"] >= 0.97


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_structured_l1_and_l2_importance_both_prune_and_keep_signal(compress, digits_task, importance):
    model, record = compress(StructuredPruneConfig(ratio=0.5, importance=importance))
    assert record.config["importance"] == importance
    assert record.details["layer_widths"]["features.0"] == 32
    # Magnitude pruning keeps the informative channels: well above the 10% of chance before any fine-tuning.
    # How far above depends on the teacher (its train_seed, and the CPU kernels that trained it): over 28
    # teachers (train_seed 0-27), 50% without fine-tuning kept 0.43-0.98 val accuracy.
    assert digits_task.evaluate(model, "val")["value"] > 0.25


def test_structured_ratio_zero_is_identity(compress, teacher):
    model, record = compress(StructuredPruneConfig(ratio=0.0))
    assert record.details["pruning_history"] == []
    assert record.details["params_after"] == record.details["params_before"]
    reference = teacher.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


# --- unstructured -----------------------------------------------------------------------------


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    return {n: 1 - float(m.weight.count_nonzero()) / m.weight.numel() for n, m in prunable_weights(model)}


def assert_no_pruning_leftovers(model: nn.Module) -> None:
    for name, module in model.named_modules():
        assert not module._forward_pre_hooks, f"{name} still has a pruning hook"
        assert not any(b.endswith("_mask") for b, _ in module.named_buffers(recurse=False)), name
        assert not any(p.endswith("_orig") for p, _ in module.named_parameters(recurse=False)), name
    for _, module in prunable_weights(model):
        assert isinstance(module.weight, nn.Parameter)


def test_unstructured_global_reaches_the_ratio_overall_and_leaves_no_masks(compress, teacher, digits_task):
    model, record = compress(UnstructuredPruneConfig(ratio=0.8))
    weights = [m.weight for _, m in prunable_weights(model)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros / total == pytest.approx(0.8, abs=1e-4)
    assert record.details["weight_sparsity"] == pytest.approx(zeros / total)
    per_layer = layer_sparsity(model)
    assert max(per_layer.values()) - min(per_layer.values()) > 0.05, (
        "global magnitude pruning spreads sparsity unevenly"
    )
    assert_no_pruning_leftovers(model)
    assert set(model.state_dict()) == set(teacher.state_dict())
    assert record.details["params"] == n_params(teacher)
    assert record.details["nonzero_params"] == sum(int(p.count_nonzero()) for p in model.parameters())
    assert record.details["sparse_size_bytes"] == sparse_storage_bytes(model)
    assert digits_task.evaluate(model, "val")["value"] >= 0.9


def test_unstructured_per_layer_reaches_the_ratio_in_every_layer(compress):
    model, _ = compress(UnstructuredPruneConfig(ratio=0.6, scope="layer"))
    for name, sparsity in layer_sparsity(model).items():
        assert sparsity == pytest.approx(0.6, abs=2e-3), name
    assert_no_pruning_leftovers(model)


def test_unstructured_zeros_the_smallest_weights(compress, teacher):
    model, _ = compress(UnstructuredPruneConfig(ratio=0.5, scope="layer"))
    pruned, original = model.classifier[1].weight, teacher.classifier[1].weight
    kept = original[pruned != 0].abs()
    dropped = original[pruned == 0].abs()
    assert kept.min() >= dropped.max()
    assert torch.equal(pruned[pruned != 0], original[pruned != 0])


def test_sparse_storage_bytes_by_hand():
    layer = nn.Linear(8, 4)  # weight 4x8 fp32, bias 4
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[0, 0] = layer.weight[1, 3] = layer.weight[1, 7] = layer.weight[3, 2] = layer.weight[3, 5] = 1.0
    # 5 nonzeros x (4 value + 4 column index) + (4 rows + 1) x 4 row pointers + dense bias 4 x 4
    assert sparse_storage_bytes(layer) == 5 * 8 + 5 * 4 + 16 == 76
    assert sparse_storage_bytes(layer, index_bytes=2) == 5 * 6 + 5 * 2 + 16


def test_sparse_storage_counts_buffers_dense():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4))
    with torch.no_grad():
        model[0].weight.zero_()
    # empty weight: just 5 row pointers; BatchNorm: weight, bias, running mean/var (4 fp32 each) + int64 counter
    assert sparse_storage_bytes(model) == 5 * 4 + 4 * 4 * 4 + 8


# --- 2:4 semi-structured ---------------------------------------------------------------------


def test_two_four_on_cpu_is_unsupported_with_a_clear_message(compress):
    with pytest.raises(UnsupportedOnDevice, match="not supported on this device"):
        compress(SemiStructured24Config())


def test_two_four_mask_keeps_the_two_largest_of_every_four():
    weight = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    mask = two_four_mask(weight)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    groups = mask.reshape(8, 8, 4)
    assert torch.all(groups.sum(dim=-1) == 2)
    magnitudes = weight.abs().reshape(8, 8, 4)
    kept_min = magnitudes.masked_fill(~groups, float("inf")).amin(dim=-1)
    dropped_max = magnitudes.masked_fill(groups, -1.0).amax(dim=-1)
    assert torch.all(kept_min >= dropped_max)


def test_two_four_mask_hand_example():
    weight = torch.tensor([[0.1, -3.0, 2.0, 0.5, 4.0, 0.0, -0.2, 1.0]])
    assert two_four_mask(weight).tolist() == [[False, True, True, False, True, False, False, True]]
