"""Transformer pruning across encoder families: BERT-named, DistilBERT, ModernBERT (fused QKV, gated MLP) and
encoders of no known family described by their config and shapes (see tiny_generic_encoder).

Every model is tiny and randomly initialised from a transformers config class: no hub, no network.
"""

from __future__ import annotations

import copy
from typing import Callable

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    DebertaV2Config,
    DebertaV2Model,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    ModernBertConfig,
    ModernBertModel,
    MPNetConfig,
    MPNetModel,
)

from orchestrator.techniques import Context, apply_technique
from orchestrator.compress.encoder_families import BERT, DEBERTA, DISTILBERT, MODERNBERT, EncoderFamily
from orchestrator.compress.transformer_prune import (
    FFNPruneConfig,
    HeadPruneConfig,
    LayerDropConfig,
    apply_structure,
    encoder_family,
    encoder_layers,
    structure_of,
)
from tests.compress.tiny_generic_encoder import TinyEncoder

HIDDEN, HEADS, INTER, LAYERS, VOCAB = 32, 4, 64, 4, 100
HEAD = HIDDEN // HEADS


def bert(attn: str) -> nn.Module:
    return BertModel(
        BertConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=INTER, max_position_embeddings=64, attn_implementation=attn,
        ),
        add_pooling_layer=False,
    )


def distilbert(attn: str) -> nn.Module:
    return DistilBertModel(
        DistilBertConfig(
            vocab_size=VOCAB, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTER,
            max_position_embeddings=64, attn_implementation=attn,
        )
    )


def modernbert(attn: str) -> nn.Module:
    # Biases on, so slicing them is tested too; a short local window, so sliding layers differ from global ones.
    return ModernBertModel(
        ModernBertConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=INTER, max_position_embeddings=64, local_attention=4, global_attn_every_n_layers=2,
            attention_bias=True, mlp_bias=True, pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1,
            sep_token_id=2, attn_implementation=attn,
        )
    )


def deberta(attn: str, share_att_key: bool = True) -> nn.Module:
    # DeBERTa-v3's layout: relative positions (c2p, p2c) through the shared query/key projections.
    return DebertaV2Model(
        DebertaV2Config(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=INTER, max_position_embeddings=64, relative_attention=True, position_buckets=8,
            pos_att_type=["p2c", "c2p"], share_att_key=share_att_key, position_biased_input=False, norm_rel_ebd="layer_norm",
        )
    )  # fmt: skip


BUILDERS: dict[str, tuple[Callable[[str], nn.Module], EncoderFamily | None]] = {
    "bert": (bert, BERT),
    "distilbert": (distilbert, DISTILBERT),
    "modernbert": (modernbert, MODERNBERT),
    "deberta": (deberta, DEBERTA),
    # No table row: discovered from the config and the shapes (None: expect the "generic" family).
    "generic": (lambda attn: TinyEncoder(), None),
    "generic-fused-gated": (lambda attn: TinyEncoder(fused=True, gated=True), None),
}


def make(name: str, attn: str = "sdpa", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return BUILDERS[name][0](attn).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # one padded row, so the attention mask matters
    return ids, mask


def ctx_for(model: nn.Module) -> Context:
    return Context(task=None, teacher=model, device=torch.device("cpu"))


def prune(model: nn.Module, *configs) -> tuple[nn.Module, dict]:
    pruned = copy.deepcopy(model)
    for config in configs:
        pruned, record = apply_technique(pruned, config, ctx_for(model))
    return pruned, record.details


def run(model: nn.Module, batch) -> torch.Tensor:
    ids, mask = batch
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear(layer: nn.Module, path: str) -> nn.Linear:
    return layer.get_submodule(path)


def per_head(family: EncoderFamily, layer: nn.Module) -> int:
    """Parameters one head holds: its q/k/v rows (and biases) and its attention-output columns."""
    qkv = [linear(layer, p) for p in family.qkv]
    rows = 3 * HEAD * HIDDEN + sum(3 * HEAD if family.fused else HEAD for p in qkv if p.bias is not None)
    return rows + HIDDEN * HEAD


def per_neuron(family: EncoderFamily, layer: nn.Module) -> int:
    """Parameters one FFN neuron holds: its input row(s) (and biases) and its output column."""
    ffn_in = linear(layer, family.ffn_in)
    rows = 2 if family.gated else 1
    return rows * (HIDDEN + (ffn_in.bias is not None)) + HIDDEN


FAMILY_NAMES = list(BUILDERS)


# --- each family is found -------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_each_family_is_recognised(name):
    model = make(name)
    expected = BUILDERS[name][1]
    family = encoder_family(model)
    assert family is expected if expected is not None else family.name == "generic"
    assert len(encoder_layers(model)) == LAYERS
    assert structure_of(model) == {
        "kept_layers": list(range(LAYERS)),
        "kept_heads": [list(range(HEADS))] * LAYERS,
        "kept_ffn": [list(range(INTER))] * LAYERS,
    }


def test_a_generic_encoder_is_described_by_call_order_and_shapes():
    plain = encoder_family(make("generic"))
    # proj is registered first, but called last of the four hidden→hidden projections: the attention output.
    assert (plain.qkv, plain.attn_out, plain.ffn_in, plain.ffn_out) == (
        ("mixer.to_q", "mixer.to_k", "mixer.to_v"), "mixer.proj", "up", "down",
    )  # fmt: skip
    assert (plain.head_size, plain.head_count, plain.head_width, plain.gated) == (HEAD, ("heads",), ("inner",), False)
    fused = encoder_family(make("generic-fused-gated"))
    assert (fused.qkv, fused.attn_out, fused.gated) == (("mixer.to_qkv",), "mixer.proj", True)


def test_discovery_leaves_the_random_state_and_the_model_alone():
    model = make("generic")
    before = copy.deepcopy(model.state_dict())
    state = torch.random.get_rng_state()
    encoder_layers(model.train())
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# --- each knob on each family ---------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_head_pruning_halves_the_heads(name, batch):
    teacher = make(name)
    family = encoder_family(teacher)
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.5))
    assert run(pruned, batch).shape == run(teacher, batch).shape
    assert torch.isfinite(run(pruned, batch)).all()
    expected = n_params(teacher) - LAYERS * 2 * per_head(family, encoder_layers(teacher)[0])
    assert details["params_after"] == n_params(pruned) == expected
    for layer, heads in zip(encoder_layers(pruned), details["structure"]["kept_heads"]):
        assert len(heads) == family.n_heads(layer) == 2
        attention = family.attention(layer)
        assert all(getattr(attention, a) == 2 for a in family.head_count)
        assert all(getattr(attention, a) == 2 * HEAD for a in family.head_width)
        assert linear(layer, family.attn_out).in_features == 2 * HEAD


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_ffn_pruning_halves_the_neurons(name, batch):
    teacher = make(name)
    family = encoder_family(teacher)
    pruned, details = prune(teacher, FFNPruneConfig(ratio=0.5))
    assert run(pruned, batch).shape == run(teacher, batch).shape
    expected = n_params(teacher) - LAYERS * (INTER // 2) * per_neuron(family, encoder_layers(teacher)[0])
    assert details["params_after"] == n_params(pruned) == expected
    for layer, neurons in zip(encoder_layers(pruned), details["structure"]["kept_ffn"]):
        assert len(neurons) == family.ffn_width(layer) == INTER // 2
        assert linear(layer, family.ffn_in).out_features == (2 if family.gated else 1) * INTER // 2


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_layer_drop_keeps_evenly_spaced_layers(name, batch):
    teacher = make(name)
    pruned, details = prune(teacher, LayerDropConfig(keep_layers=2))
    assert run(pruned, batch).shape == run(teacher, batch).shape
    assert details["structure"]["kept_layers"] == [1, 3]
    assert details["params_after"] == n_params(pruned) < n_params(teacher)
    assert pruned.config.num_hidden_layers == 2
    teacher_layers = encoder_layers(teacher)
    for layer, index in zip(encoder_layers(pruned), [1, 3]):
        for (key, a), (_, b) in zip(layer.state_dict().items(), teacher_layers[index].state_dict().items()):
            assert torch.equal(a, b), key


def test_distilbert_layer_drop_updates_its_layer_count():
    pruned, _ = prune(make("distilbert"), LayerDropConfig(keep_layers=3))
    assert pruned.transformer.n_layers == pruned.config.n_layers == 3


def test_modernbert_layer_drop_keeps_each_layers_attention_type(batch):
    teacher = make("modernbert")
    assert teacher.config.layer_types == ["full_attention", "sliding_attention"] * 2
    pruned, details = prune(teacher, LayerDropConfig(keep_layers=3))
    assert details["structure"]["kept_layers"] == [0, 1, 3]
    assert pruned.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    assert [layer.attention_type for layer in encoder_layers(pruned)] == pruned.config.layer_types
    # Keeping every layer is a no-op, types included.
    same, _ = prune(teacher, LayerDropConfig(keep_layers=LAYERS))
    assert torch.equal(run(same, batch), run(teacher, batch))


# --- exactness: pruning what contributes nothing changes nothing ------------------------------------


def zero_head(family: EncoderFamily, layer: nn.Module, head: int) -> None:
    """Zero one head's q/k/v rows (in every block of a fused projection) and its attention-output columns."""
    cols = slice(head * HEAD, (head + 1) * HEAD)
    with torch.no_grad():
        for projection in family.projections(layer):
            blocks = 3 if family.fused else 1
            for block in range(blocks):
                rows = slice(block * HIDDEN + head * HEAD, block * HIDDEN + (head + 1) * HEAD)
                projection.weight[rows] = 0
                if projection.bias is not None:
                    projection.bias[rows] = 0
        linear(layer, family.attn_out).weight[:, cols] = 0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_pruning_zeroed_heads_changes_nothing(name, attn, batch):
    teacher = make(name, attn)
    family = encoder_family(teacher)
    dead = [1, 2, 0, 3]
    for layer, head in zip(encoder_layers(teacher), dead):
        zero_head(family, layer, head)
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.25))
    assert details["structure"]["kept_heads"] == [[h for h in range(HEADS) if h != d] for d in dead]
    torch.testing.assert_close(run(pruned, batch), run(teacher, batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_pruning_zeroed_ffn_neurons_changes_nothing(name, batch):
    teacher = make(name)
    family = encoder_family(teacher)
    gen = torch.Generator().manual_seed(2)
    dead = [sorted(torch.randperm(INTER, generator=gen)[: INTER // 4].tolist()) for _ in range(LAYERS)]
    with torch.no_grad():
        for layer, neurons in zip(encoder_layers(teacher), dead):
            # Only the output columns: a gated neuron whose input and gate rows live on must still go as a pair.
            linear(layer, family.ffn_out).weight[:, neurons] = 0
            ffn_in = linear(layer, family.ffn_in)
            rows = neurons + [INTER + n for n in neurons] if family.gated else neurons
            ffn_in.weight[rows] *= 1e-3  # the least important by norm, yet not zero
    pruned, details = prune(teacher, FFNPruneConfig(ratio=0.25))
    assert details["structure"]["kept_ffn"] == [[n for n in range(INTER) if n not in d] for d in dead]
    torch.testing.assert_close(run(pruned, batch), run(teacher, batch), rtol=0, atol=1e-5)


# --- ModernBERT: fused QKV heads and gated MLP pairs ----------------------------------------------------


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_fused_qkv_kept_heads_compute_what_they_computed_before(attn, batch):
    """The context each kept head feeds into Wo is the same before and after pruning, head by head."""
    teacher = make("modernbert", attn)
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.5))

    def contexts(model: nn.Module) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        hooks = [
            layer.attn.Wo.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
            for layer in encoder_layers(model)
        ]
        run(model, batch)
        for hook in hooks:
            hook.remove()
        return seen

    # Layer 0 sees the same embeddings in both models, so its kept heads must match exactly.
    before, after = contexts(teacher)[0], contexts(pruned)[0]
    kept = details["structure"]["kept_heads"][0]
    assert after.shape[-1] == len(kept) * HEAD
    for position, head in enumerate(kept):
        torch.testing.assert_close(
            after[..., position * HEAD : (position + 1) * HEAD], before[..., head * HEAD : (head + 1) * HEAD]
        )


def test_fused_qkv_rows_are_the_kept_heads_of_each_block():
    teacher = make("modernbert")
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.5))
    kept_heads = details["structure"]["kept_heads"]
    for source, layer, heads in zip(encoder_layers(teacher), encoder_layers(pruned), kept_heads):
        rows = [block * HIDDEN + h * HEAD + j for block in range(3) for h in heads for j in range(HEAD)]
        assert torch.equal(layer.attn.Wqkv.weight, source.attn.Wqkv.weight[rows])
        assert torch.equal(layer.attn.Wqkv.bias, source.attn.Wqkv.bias[rows])


def test_gated_mlp_keeps_input_and_gate_rows_together():
    """A pruned gated MLP computes the unpruned one restricted to the kept neurons: act(input_i) · gate_i, paired."""
    teacher = make("modernbert")
    pruned, details = prune(teacher, FFNPruneConfig(ratio=0.5))
    x = torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(3))
    kept_ffn = details["structure"]["kept_ffn"]
    for source, layer, kept in zip(encoder_layers(teacher), encoder_layers(pruned), kept_ffn):
        with torch.no_grad():
            inputs, gates = source.mlp.Wi(x).chunk(2, dim=-1)
            hidden = source.mlp.act(inputs[..., kept]) * gates[..., kept]
            expected = hidden @ source.mlp.Wo.weight[:, kept].T + source.mlp.Wo.bias
            torch.testing.assert_close(layer.mlp(x), expected)
        assert torch.equal(layer.mlp.Wi.weight, source.mlp.Wi.weight[kept + [INTER + n for n in kept]])


# --- rebuilding: structure → apply_structure on a fresh model → strict load ----------------------------


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_composed_structure_rebuilds_exactly(name, batch):
    teacher = make(name)
    model, details = prune(
        teacher, LayerDropConfig(keep_layers=3), HeadPruneConfig(ratio=0.5), FFNPruneConfig(ratio=0.25),
        HeadPruneConfig(ratio=0.5),
    )  # fmt: skip
    structure = details["structure"]
    assert structure == structure_of(model)
    assert [len(h) for h in structure["kept_heads"]] == [1, 1, 1]

    fresh = apply_structure(make(name, seed=1), structure)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # different weights, so loading must be what makes the outputs match
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(run(fresh, batch), run(model, batch))
    assert structure_of(fresh) == structure
    assert n_params(fresh) == n_params(model) < n_params(teacher)


# --- a model no family fits ------------------------------------------------------------------------


def test_a_model_no_family_fits_names_its_class_and_the_knobs_that_still_apply():
    # torch's own encoder keeps its q/k/v in one Parameter of nn.MultiheadAttention, not in nn.Linear.
    layer = nn.TransformerEncoderLayer(d_model=HIDDEN, nhead=HEADS, dim_feedforward=INTER, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    with pytest.raises(ValueError, match="needs a BERT-style encoder") as error:
        apply_technique(model, HeadPruneConfig(ratio=0.5), ctx_for(model))
    message = str(error.value)
    assert message.startswith("TransformerEncoder fits no encoder layout")
    assert "int8" in message and "runtime" in message and "kd_steps" in message
    for family in (BERT, DISTILBERT, MODERNBERT):
        assert family.ffn_in in message


def test_a_generic_encoder_whose_forward_reads_the_shared_head_count_is_refused():
    """Its attention reshapes by config.num_attention_heads, that slicing cannot keep: no family, not a wrong one."""
    model = TinyEncoder(heads_from_config=True).eval()
    with pytest.raises(ValueError, match="TinyEncoder fits no encoder layout.*still apply.*needs a BERT-style encoder"):
        encoder_layers(model)


def test_an_encoder_with_a_per_head_tensor_beside_its_layers_is_refused():
    """MPNet's layers are plain Linear, but its encoder adds a per-head position bias that slicing would miss."""
    model = MPNetModel(
        MPNetConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS,
            intermediate_size=INTER,
        )
    )
    with pytest.raises(ValueError, match="MPNetModel fits no encoder layout"):
        encoder_layers(model)


def test_a_deberta_with_separate_position_projections_is_refused():
    """Without share_att_key, relative positions go through pos_key_proj/pos_query_proj, per head too: slicing
    query/key/value alone would leave them the old head count, so no family claims the layer."""
    model = deberta("sdpa", share_att_key=False)
    with pytest.raises(ValueError, match="DebertaV2Model fits no encoder layout"):
        structure_of(model)
