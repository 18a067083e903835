"""Transformer pruning: heads, FFN neurons and layers really removed, exactly, and rebuildable from the record."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from orchestrator.techniques import Context, apply_technique
from orchestrator.compress.transformer_prune import (
    FFNPruneConfig,
    HeadPruneConfig,
    LayerDropConfig,
    apply_structure,
    encoder_layers,
    layer_drop_indices,
    structure_of,
)

HIDDEN, HEADS, INTER, LAYERS = 32, 4, 64, 4
HEAD = HIDDEN // HEADS


class Embedder(nn.Module):
    """A sentence-embedding wrapper: a BertModel under `.encoder`, mean-pooled over real tokens."""

    def __init__(self, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        config = BertConfig(
            vocab_size=100,
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=INTER,
            max_position_embeddings=64,
            attn_implementation=attn_implementation,
        )
        self.encoder = BertModel(config, add_pooling_layer=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)


def make_teacher(attn_implementation: str = "sdpa") -> Embedder:
    torch.manual_seed(0)
    return Embedder(attn_implementation).eval()


@pytest.fixture
def teacher() -> Embedder:
    return make_teacher()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 100, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # one padded row, so the attention mask matters
    return ids, mask


def ctx_for(model: nn.Module) -> Context:
    return Context(task=None, teacher=model, device=torch.device("cpu"))


def prune(model: nn.Module, config) -> tuple[nn.Module, dict]:
    pruned, record = apply_technique(copy.deepcopy(model), config, ctx_for(model))
    return pruned, record.details


def run(model: nn.Module, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(*batch)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Exact parameter counts removed by each knob.
PER_HEAD = 3 * (HEAD * HIDDEN + HEAD) + HIDDEN * HEAD  # q/k/v rows + biases, output.dense columns
PER_NEURON = (HIDDEN + 1) + HIDDEN  # intermediate row + bias, output.dense column
PER_LAYER = 4 * (HIDDEN * HIDDEN + HIDDEN) + 2 * HIDDEN + (HIDDEN * INTER + INTER) + (INTER * HIDDEN + HIDDEN) + 2 * HIDDEN


# --- each knob ----------------------------------------------------------------------------


def test_per_layer_count_matches_the_model(teacher):
    assert n_params(encoder_layers(teacher)[0]) == PER_LAYER


def test_head_pruning_removes_exactly_half_the_heads(teacher, batch):
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.5))
    assert run(pruned, batch).shape == run(teacher, batch).shape
    assert details["params_before"] == n_params(teacher)
    assert details["params_after"] == n_params(pruned) == n_params(teacher) - LAYERS * 2 * PER_HEAD
    for layer, heads in zip(encoder_layers(pruned), details["structure"]["kept_heads"]):
        attn = layer.attention.self
        assert len(heads) == attn.num_attention_heads == 2
        assert attn.all_head_size == attn.query.out_features == attn.value.out_features == 2 * HEAD
        assert layer.attention.output.dense.in_features == 2 * HEAD
    assert torch.isfinite(run(pruned, batch)).all()


def test_ffn_pruning_removes_exactly_half_the_neurons(teacher, batch):
    pruned, details = prune(teacher, FFNPruneConfig(ratio=0.5))
    assert run(pruned, batch).shape == run(teacher, batch).shape
    assert details["params_after"] == n_params(pruned) == n_params(teacher) - LAYERS * (INTER // 2) * PER_NEURON
    for layer, neurons in zip(encoder_layers(pruned), details["structure"]["kept_ffn"]):
        assert layer.intermediate.dense.out_features == layer.output.dense.in_features == len(neurons) == INTER // 2


def test_layer_drop_keeps_evenly_spaced_teacher_layers(teacher, batch):
    pruned, details = prune(teacher, LayerDropConfig(keep_layers=2))
    assert run(pruned, batch).shape == run(teacher, batch).shape
    assert details["params_after"] == n_params(pruned) == n_params(teacher) - 2 * PER_LAYER
    assert details["structure"]["kept_layers"] == [1, 3]
    assert pruned.encoder.config.num_hidden_layers == 2
    teacher_layers = encoder_layers(teacher)
    for layer, index in zip(encoder_layers(pruned), [1, 3]):
        for (name, a), (_, b) in zip(layer.state_dict().items(), teacher_layers[index].state_dict().items()):
            assert torch.equal(a, b), name


def test_layer_drop_in_place_keeps_the_same_module_objects(teacher):
    originals = list(encoder_layers(teacher))
    model, _ = apply_technique(teacher, LayerDropConfig(keep_layers=2), ctx_for(teacher))
    assert [id(m) for m in encoder_layers(model)] == [id(originals[1]), id(originals[3])]


def test_layer_drop_indices_spread_over_depth_and_end_at_the_last():
    assert layer_drop_indices(6, 3) == [1, 3, 5]
    assert layer_drop_indices(12, 4) == [2, 5, 8, 11]
    assert layer_drop_indices(6, 1) == [5]
    assert layer_drop_indices(6, 6) == list(range(6))


def test_keeping_every_layer_is_a_no_op(teacher, batch):
    pruned, details = prune(teacher, LayerDropConfig(keep_layers=LAYERS))
    assert details["params_after"] == details["params_before"]
    assert torch.equal(run(pruned, batch), run(teacher, batch))


# --- exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize("config", [HeadPruneConfig(ratio=0.0), FFNPruneConfig(ratio=0.0)])
def test_ratio_zero_changes_nothing(teacher, batch, config):
    pruned, details = prune(teacher, config)
    assert details["params_after"] == details["params_before"]
    assert torch.equal(run(pruned, batch), run(teacher, batch))


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_pruning_zeroed_heads_changes_nothing(batch, attn_implementation):
    teacher = make_teacher(attn_implementation)
    dead = [1, 2, 0, 3]  # one dead head per layer, a different one in each
    with torch.no_grad():
        for layer, head in zip(encoder_layers(teacher), dead):
            rows = slice(head * HEAD, (head + 1) * HEAD)
            attn = layer.attention.self
            for linear in (attn.query, attn.key, attn.value):
                linear.weight[rows] = 0
                linear.bias[rows] = 0
            layer.attention.output.dense.weight[:, rows] = 0
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.25))
    assert details["structure"]["kept_heads"] == [[h for h in range(HEADS) if h != d] for d in dead]
    torch.testing.assert_close(run(pruned, batch), run(teacher, batch), rtol=0, atol=1e-6)


def test_pruning_zeroed_ffn_neurons_changes_nothing(teacher, batch):
    gen = torch.Generator().manual_seed(2)
    dead = [sorted(torch.randperm(INTER, generator=gen)[: INTER // 4].tolist()) for _ in range(LAYERS)]
    with torch.no_grad():
        for layer, neurons in zip(encoder_layers(teacher), dead):
            layer.intermediate.dense.weight[neurons] = 0
            layer.intermediate.dense.bias[neurons] = 0
            layer.output.dense.weight[:, neurons] = 0
    pruned, details = prune(teacher, FFNPruneConfig(ratio=0.25))
    assert details["structure"]["kept_ffn"] == [[n for n in range(INTER) if n not in d] for d in dead]
    torch.testing.assert_close(run(pruned, batch), run(teacher, batch), rtol=0, atol=1e-6)


# --- composition and rebuilding --------------------------------------------------------------


@pytest.mark.parametrize(
    "configs",
    [
        [LayerDropConfig(keep_layers=3), HeadPruneConfig(ratio=0.5), FFNPruneConfig(ratio=0.5)],
        [FFNPruneConfig(ratio=0.25), HeadPruneConfig(ratio=0.25), LayerDropConfig(keep_layers=2), FFNPruneConfig(ratio=0.5)],
    ],
    ids=["layers-heads-ffn", "ffn-heads-layers-ffn"],
)
def test_composed_structure_rebuilds_exactly(teacher, batch, configs):
    model = copy.deepcopy(teacher)
    for config in configs:
        model, record = apply_technique(model, config, ctx_for(teacher))
    structure = record.details["structure"]
    assert structure == structure_of(model)
    # Indices are the teacher's: the kept layers' surviving weights are slices of the teacher's.
    teacher_layers = encoder_layers(teacher)
    for layer, index, heads, neurons in zip(
        encoder_layers(model), structure["kept_layers"], structure["kept_heads"], structure["kept_ffn"]
    ):
        source = teacher_layers[index]
        rows = [h * HEAD + j for h in heads for j in range(HEAD)]
        assert torch.equal(layer.attention.self.value.weight, source.attention.self.value.weight[rows])
        assert torch.equal(layer.output.dense.weight, source.output.dense.weight[:, neurons])

    rebuilt = apply_structure(copy.deepcopy(teacher), structure)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    # Same starting weights → same weights, before any loading.
    for (name, a), (_, b) in zip(rebuilt.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name

    fresh = apply_structure(make_teacher(), structure)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # different weights, so loading must be what makes the outputs match
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(run(fresh, batch), run(model, batch))
    assert structure_of(fresh) == structure


def test_repeated_head_pruning_records_teacher_indices(teacher):
    model, _ = prune(teacher, HeadPruneConfig(ratio=0.25))
    first = structure_of(model)["kept_heads"]
    model, record = apply_technique(model, HeadPruneConfig(ratio=0.4), ctx_for(teacher))
    second = record.details["structure"]["kept_heads"]
    for before, after in zip(first, second):
        assert len(after) == 2 and set(after) <= set(before)


# --- errors and registration ----------------------------------------------------------------


def test_removing_every_head_is_refused(teacher):
    with pytest.raises(ValueError, match=r"^prune_heads_ratio: .*at least one head"):
        prune(teacher, HeadPruneConfig(ratio=0.95))


def test_keeping_too_many_layers_is_refused(teacher):
    with pytest.raises(ValueError, match=rf"^keep_layers: .*1\.\.{LAYERS} is allowed"):
        prune(teacher, LayerDropConfig(keep_layers=LAYERS + 1))


def test_keeping_no_layers_is_refused(teacher):
    with pytest.raises(ValueError, match="keep_layers"):
        LayerDropConfig(keep_layers=0)
    with pytest.raises(ValueError, match=r"^keep_layers: .*1\.\.4 is allowed"):
        prune(teacher, LayerDropConfig.model_construct(keep_layers=0))


def test_a_model_without_a_bert_encoder_is_refused():
    with pytest.raises(ValueError, match="needs a BERT-style encoder"):
        encoder_layers(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))


def test_handlers_are_registered_and_need_no_task(teacher, batch):
    model, record = apply_technique(teacher, HeadPruneConfig(ratio=0.5), ctx_for(teacher))
    assert record.stage == "prune" and record.technique == "heads"
    assert record.config == {"ratio": 0.5}
    assert set(record.details["structure"]) == {"kept_layers", "kept_heads", "kept_ffn"}
    assert run(model, batch).shape == (3, HIDDEN)
