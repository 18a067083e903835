"""Transformer pruning of Llama-style decoders: key-value groups, gated FFN neurons and blocks really removed, the
Hugging Face config kept true (save_pretrained → from_pretrained gives the same logits, generate() with a KV cache
still works), and depth pruned by measured block influence (ShortGPT) or evenly.

Every model is tiny and random (tiny_llama, or a tiny config of another family): no hub, no network.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    MistralConfig,
    MistralForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from orchestrator.compress.encoder_families import LLAMA
from orchestrator.compress.layer_importance import block_influence, least_influential
from orchestrator.compress.recipe import Recipe, apply_recipe, techniques
from orchestrator.compress.transformer_prune import (
    BlockDropConfig,
    FFNPruneConfig,
    HeadPruneConfig,
    LayerDropConfig,
    apply_structure,
    encoder_family,
    encoder_layers,
    encoder_shape,
    layer_drop_indices,
    prunable_units,
    structure_of,
    teacher_structure,
)
from orchestrator.errors import InputError
from orchestrator.tasks.llm.model import CausalLM, tiny_llama
from orchestrator.techniques import Context, apply_technique

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, INTER = 256, 64, 4, 4, 2, 128
HEAD_DIM, GROUP = HIDDEN // HEADS, HEADS // KV_HEADS

# Parameters of tiny_llama (no biases, tied embeddings counted once), by hand.
PER_GROUP = GROUP * HEAD_DIM * HIDDEN + 2 * HEAD_DIM * HIDDEN + HIDDEN * GROUP * HEAD_DIM  # q rows, k+v rows, o columns
PER_NEURON = 3 * HIDDEN  # gate row, up row, down column
PER_LAYER = KV_HEADS * PER_GROUP + INTER * PER_NEURON + 2 * HIDDEN  # + two RMSNorms
TOTAL = LAYERS * PER_LAYER + VOCAB * HIDDEN + HIDDEN  # + embeddings (= lm_head) + final norm


def make(seed: int = 0, **overrides: Any) -> CausalLM:
    return tiny_llama(seed=seed, initializer_range=0.2, **overrides)


class FakeTask:
    """Just what block influence reads: calibration batches (token ids, or named tensors) and their token mask."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches
        self.asked: list[tuple[int, int]] = []

    def calibration_batches(self, n_batches: int = 8, batch_size: int = 64) -> list[Any]:
        self.asked.append((n_batches, batch_size))
        return self.batches

    def token_mask(self, inputs: Any) -> torch.Tensor | None:
        return inputs.get("attention_mask") if isinstance(inputs, dict) else None


def token_batches(n: int = 2, size: int = 3, length: int = 12, seed: int = 5) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (size, length), generator=gen) for _ in range(n)]


def ctx_for(model: nn.Module, task: Any = None) -> Context:
    return Context(task=task, teacher=model, device=torch.device("cpu"))


def prune(model: nn.Module, *configs, task: Any = None) -> tuple[nn.Module, dict]:
    pruned = copy.deepcopy(model)
    for config in configs:
        pruned, record = apply_technique(pruned, config, ctx_for(model, task))
    return pruned, record.details


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(1))


def reload(model: CausalLM, tmp_path) -> CausalLM:
    model.hf.save_pretrained(tmp_path)
    return CausalLM(AutoModelForCausalLM.from_pretrained(tmp_path).eval())


def greedy_without_cache(model: CausalLM, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    tokens = prompt
    for _ in range(steps):
        tokens = torch.cat([tokens, logits(model, tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


# --- the family ------------------------------------------------------------------------------------


def test_tiny_llama_is_the_llama_family_with_its_whole_structure():
    model = make()
    assert encoder_family(model) is LLAMA
    assert encoder_layers(model) is model.hf.model.layers
    assert n_params(model) == TOTAL
    assert structure_of(model) == {
        "kept_layers": list(range(LAYERS)),
        "kept_heads": [list(range(HEADS))] * LAYERS,
        "kept_ffn": [list(range(INTER))] * LAYERS,
    }


# --- width: key-value groups and FFN neurons -----------------------------------------------------------


def test_head_pruning_removes_whole_key_value_groups():
    teacher = make()
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.5))
    assert details["params_after"] == n_params(pruned) == TOTAL - LAYERS * PER_GROUP
    assert details["kv_groups_removed_per_layer"] == [1] * LAYERS
    assert details["heads_removed_per_layer"] == [GROUP] * LAYERS
    for layer, source, heads in zip(encoder_layers(pruned), encoder_layers(teacher), details["structure"]["kept_heads"]):
        (group,) = {h // GROUP for h in heads}  # one whole group kept: its GROUP query heads
        assert heads == [group * GROUP + j for j in range(GROUP)]
        attn, before = layer.self_attn, source.self_attn
        q_rows = [h * HEAD_DIM + j for h in heads for j in range(HEAD_DIM)]
        kv_rows = list(range(group * HEAD_DIM, (group + 1) * HEAD_DIM))
        assert torch.equal(attn.q_proj.weight, before.q_proj.weight[q_rows])
        assert torch.equal(attn.k_proj.weight, before.k_proj.weight[kv_rows])
        assert torch.equal(attn.v_proj.weight, before.v_proj.weight[kv_rows])
        assert torch.equal(attn.o_proj.weight, before.o_proj.weight[:, q_rows])
        assert attn.num_key_value_groups == GROUP and attn.head_dim == HEAD_DIM
    config = pruned.config
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (GROUP, 1, HEAD_DIM)
    assert teacher.config.num_attention_heads == HEADS  # the teacher is left alone


def test_the_weakest_key_value_group_goes():
    teacher = make()
    with torch.no_grad():
        for layer, weak in zip(encoder_layers(teacher), [0, 1, 1, 0]):
            rows = slice(weak * GROUP * HEAD_DIM, (weak + 1) * GROUP * HEAD_DIM)  # its query heads
            layer.self_attn.q_proj.weight[rows] *= 1e-3
            layer.self_attn.o_proj.weight[:, rows] *= 1e-3
    _, details = prune(teacher, HeadPruneConfig(ratio=0.5))
    kept = [[h // GROUP for h in heads][0] for heads in details["structure"]["kept_heads"]]
    assert kept == [1, 0, 0, 1]


def test_plain_multi_head_attention_is_pruned_per_head():
    teacher = make(kv_heads=HEADS)
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.25))
    assert "kv_groups_removed_per_layer" not in details
    assert details["heads_removed_per_layer"] == [1] * LAYERS
    per_head = 4 * HEAD_DIM * HIDDEN  # q, k, v rows and o columns
    assert n_params(pruned) == n_params(teacher) - LAYERS * per_head
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (HEADS - 1, HEADS - 1)


def test_the_units_each_knob_prunes_are_groups_for_heads():
    units = {"keep_layers": LAYERS, "drop_layers": LAYERS, "prune_heads_ratio": KV_HEADS, "prune_ffn_ratio": INTER}
    assert prunable_units(make()) == units
    assert prunable_units(make(kv_heads=HEADS))["prune_heads_ratio"] == HEADS
    pruned, _ = prune(make(), HeadPruneConfig(ratio=0.5), BlockDropConfig(n_drop=1, importance="even"))
    assert prunable_units(pruned) == {**units, "keep_layers": 3, "drop_layers": 3, "prune_heads_ratio": 1}


def test_removing_every_group_is_refused():
    with pytest.raises(ValueError, match=r"^prune_heads_ratio: 0\.8 would remove all 2 key-value groups"):
        prune(make(), HeadPruneConfig(ratio=0.8))


def test_ffn_pruning_removes_gate_and_up_rows_and_down_columns_together():
    teacher = make()
    with torch.no_grad():
        weak = [3, 70, 127]
        for layer in encoder_layers(teacher):
            layer.mlp.up_proj.weight[weak] *= 1e-3
            layer.mlp.gate_proj.weight[weak] *= 1e-3
    pruned, details = prune(teacher, FFNPruneConfig(ratio=0.25))
    assert details["params_after"] == n_params(pruned) == TOTAL - LAYERS * (INTER // 4) * PER_NEURON
    for layer, source, kept in zip(encoder_layers(pruned), encoder_layers(teacher), details["structure"]["kept_ffn"]):
        assert len(kept) == INTER - INTER // 4 and not set(weak) & set(kept)
        mlp, before = layer.mlp, source.mlp
        assert torch.equal(mlp.gate_proj.weight, before.gate_proj.weight[kept])
        assert torch.equal(mlp.up_proj.weight, before.up_proj.weight[kept])
        assert torch.equal(mlp.down_proj.weight, before.down_proj.weight[:, kept])
        assert mlp.intermediate_size == len(kept)
    assert pruned.config.intermediate_size == INTER - INTER // 4


def test_pruning_dead_groups_and_neurons_changes_nothing(ids):
    teacher = make()
    with torch.no_grad():
        for layer, dead in zip(encoder_layers(teacher), [1, 0, 1, 1]):
            layer.self_attn.o_proj.weight[:, dead * GROUP * HEAD_DIM : (dead + 1) * GROUP * HEAD_DIM] = 0
            layer.mlp.down_proj.weight[:, :32] = 0  # neurons 0..31 write nothing
            layer.mlp.gate_proj.weight[:32] *= 1e-3  # and rank last
    pruned, details = prune(teacher, HeadPruneConfig(ratio=0.5), FFNPruneConfig(ratio=0.25))
    assert [h[0] // GROUP for h in details["structure"]["kept_heads"]] == [0, 1, 0, 0]
    assert all(kept == list(range(32, INTER)) for kept in details["structure"]["kept_ffn"])
    torch.testing.assert_close(logits(pruned, ids), logits(teacher, ids), rtol=0, atol=1e-5)


# --- saved and loaded again, generating with a KV cache ------------------------------------------------


COMBINATIONS = {
    "heads": [HeadPruneConfig(ratio=0.5)],
    "ffn": [FFNPruneConfig(ratio=0.5)],
    "layers": [LayerDropConfig(keep_layers=2)],
    "all": [LayerDropConfig(keep_layers=3), HeadPruneConfig(ratio=0.5), FFNPruneConfig(ratio=0.25)],
    "ffn-blocks-heads": [FFNPruneConfig(ratio=0.25), BlockDropConfig(n_drop=1, importance="even"), HeadPruneConfig(ratio=0.5)],
}
# Parameters each combination removes, by hand.
REMOVED = {
    "heads": LAYERS * PER_GROUP,
    "ffn": LAYERS * (INTER // 2) * PER_NEURON,
    "layers": 2 * PER_LAYER,
    "all": PER_LAYER + 3 * PER_GROUP + 3 * (INTER // 4) * PER_NEURON,
    "ffn-blocks-heads": LAYERS * (INTER // 4) * PER_NEURON + (PER_LAYER - (INTER // 4) * PER_NEURON) + 3 * PER_GROUP,
}


@pytest.mark.parametrize("name", list(COMBINATIONS))
def test_pruned_model_saves_reloads_and_generates_the_same(name, ids, tmp_path):
    teacher = make()
    pruned, details = prune(teacher, *COMBINATIONS[name])
    assert n_params(pruned) == TOTAL - REMOVED[name]
    reloaded = reload(pruned, tmp_path)
    assert n_params(reloaded) == n_params(pruned)
    assert reloaded.hf.lm_head.weight is reloaded.hf.model.embed_tokens.weight  # still tied
    assert torch.equal(logits(reloaded, ids), logits(pruned, ids))
    assert structure_of(reloaded)["kept_heads"] == [list(range(len(h))) for h in details["structure"]["kept_heads"]]
    layers = encoder_layers(pruned)
    assert [layer.self_attn.layer_idx for layer in layers] == list(range(len(layers)))
    assert pruned.config.num_hidden_layers == len(layers) == len(details["structure"]["kept_layers"])

    prompt = ids[:1, :6]
    for model in (pruned, reloaded):
        generated = model.hf.generate(
            prompt, max_new_tokens=6, do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=0
        )
        assert torch.equal(generated, greedy_without_cache(pruned, prompt, 6))


def qwen2() -> CausalLM:
    # Biases on q/k/v; sliding-window layers after the first two, so layer_types differ per layer.
    config = Qwen2Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, intermediate_size=INTER, max_position_embeddings=64, use_sliding_window=True,
        sliding_window=4, max_window_layers=2, tie_word_embeddings=True, initializer_range=0.2,
    )  # fmt: skip
    return CausalLM(Qwen2ForCausalLM(config).eval())


def mistral() -> CausalLM:
    config = MistralConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, intermediate_size=INTER, max_position_embeddings=64, sliding_window=4,
        initializer_range=0.2,
    )  # fmt: skip
    return CausalLM(MistralForCausalLM(config).eval())


def gemma3() -> CausalLM:
    # Gemma's layers carry Llama's module names (plus per-head-size q/k norms, which pruning heads leaves whole).
    config = Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, intermediate_size=INTER, head_dim=HEAD_DIM, max_position_embeddings=64,
        sliding_window=4, initializer_range=0.2,
    )  # fmt: skip
    return CausalLM(Gemma3ForCausalLM(config).eval())


@pytest.mark.parametrize("build", [qwen2, mistral, gemma3])
def test_other_families_with_llama_names_prune_save_and_reload(build, ids, tmp_path):
    torch.manual_seed(0)
    teacher = build()
    assert encoder_family(teacher) is LLAMA
    pruned, details = prune(teacher, LayerDropConfig(keep_layers=3), HeadPruneConfig(ratio=0.5), FFNPruneConfig(ratio=0.25))
    kept = details["structure"]["kept_layers"]
    assert kept == layer_drop_indices(LAYERS, 3)
    layer_types = getattr(teacher.config, "layer_types", None)
    if layer_types is not None:
        assert pruned.config.layer_types == [layer_types[i] for i in kept]
    reloaded = reload(pruned, tmp_path)
    assert torch.equal(logits(reloaded, ids), logits(pruned, ids))
    prompt = ids[:1, :6]
    generated = pruned.hf.generate(prompt, max_new_tokens=4, do_sample=False, use_cache=True, eos_token_id=None, pad_token_id=0)
    assert torch.equal(generated, greedy_without_cache(pruned, prompt, 4))


def test_apply_structure_rebuilds_the_pruned_shape_and_loads_its_weights(ids):
    teacher = make()
    configs = [BlockDropConfig(n_drop=1, importance="even"), HeadPruneConfig(ratio=0.5), FFNPruneConfig(ratio=0.5)]
    pruned, details = prune(teacher, *configs)
    rebuilt = apply_structure(make(seed=3), details["structure"])
    assert structure_of(rebuilt) == details["structure"]
    assert rebuilt.config.to_dict() == pruned.config.to_dict()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    assert torch.equal(logits(rebuilt, ids), logits(pruned, ids))


def test_a_structure_splitting_a_key_value_group_is_refused():
    structure = structure_of(make())
    structure["kept_heads"][0] = [0, 2, 3]  # query head 1 shares key-value head 0 with query head 0
    with pytest.raises(ValueError, match=r"kept_heads: .*splits a key-value group"):
        apply_structure(make(), structure)


def test_layers_of_different_widths_are_refused_for_a_config_that_holds_one():
    structure = structure_of(make())
    structure["kept_ffn"][1] = structure["kept_ffn"][1][:64]
    with pytest.raises(ValueError, match=r"structure: .*share one intermediate_size.*\[64, 128\]"):
        apply_structure(make(), structure)


# --- depth by block influence ---------------------------------------------------------------------------


def test_block_influence_matches_a_hand_computation_with_the_hidden_states():
    model = make()
    batches = token_batches()
    scores = block_influence(model, encoder_layers(model), batches)
    assert scores.shape == (LAYERS,)
    # Hidden state i is the input of block i and i + 1 its output (the last one has the final norm: not compared).
    with torch.no_grad():
        states = [model.hf(input_ids=b, output_hidden_states=True).hidden_states for b in batches]
    for i in range(LAYERS - 1):
        cos = torch.cat([torch.cosine_similarity(h[i].double(), h[i + 1].double(), dim=-1).flatten() for h in states])
        assert float(scores[i]) == pytest.approx(1 - float(cos.mean()), abs=1e-9)


def test_block_influence_counts_only_real_tokens_of_a_masked_batch():
    model = make()
    ids = token_batches(n=1)[0]
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    scores = block_influence(model, encoder_layers(model), [{"input_ids": ids, "attention_mask": mask}])
    with torch.no_grad():
        h = model.hf(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    cos = torch.cosine_similarity(h[1].double(), h[2].double(), dim=-1)
    expected = 1 - float(cos[mask.bool()].mean())
    assert float(scores[1]) == pytest.approx(expected, abs=1e-9)
    assert float(scores[1]) != pytest.approx(1 - float(cos.mean()), abs=1e-9)  # the padding would have counted


def test_least_influential_takes_the_lowest_and_the_earlier_of_equals():
    assert least_influential(torch.tensor([0.3, 0.1, 0.2, 0.1]), 2) == [1, 3]
    assert least_influential(torch.tensor([0.3, 0.1, 0.2, 0.1]), 1) == [1]


def test_dropping_by_block_influence_drops_the_least_influential_block(ids):
    teacher = make()
    with torch.no_grad():  # block 1 writes nothing to the residual stream: its output is its input
        encoder_layers(teacher)[1].self_attn.o_proj.weight.zero_()
        encoder_layers(teacher)[1].mlp.down_proj.weight.zero_()
    task = FakeTask(token_batches())
    pruned, details = prune(teacher, BlockDropConfig(n_drop=1), task=task)
    assert task.asked == [(4, 4)]  # the cheap default: 4 batches of 4 windows
    scores = torch.tensor(details["block_influence"])
    assert float(scores[1]) == pytest.approx(0.0, abs=1e-9) and int(scores.argmin()) == 1
    assert details["dropped_layers"] == [1]
    assert details["structure"]["kept_layers"] == [0, 2, 3]
    assert details["params_after"] == TOTAL - PER_LAYER
    torch.testing.assert_close(logits(pruned, ids), logits(teacher, ids), rtol=0, atol=1e-5)


def test_dropping_by_block_influence_drops_the_lowest_scores():
    teacher = make()
    task = FakeTask(token_batches())
    _, details = prune(teacher, BlockDropConfig(n_drop=2), task=task)
    scores = block_influence(teacher, encoder_layers(teacher), task.batches)
    assert details["block_influence"] == pytest.approx(scores.tolist(), abs=1e-6)
    assert details["dropped_layers"] == sorted(int(i) for i in torch.argsort(scores)[:2])


def test_dropping_evenly_keeps_evenly_spaced_blocks_without_calibration():
    teacher = make(layers=6)
    _, details = prune(teacher, BlockDropConfig(n_drop=3, importance="even"))  # no task: none needed
    assert details["structure"]["kept_layers"] == layer_drop_indices(6, 3) == [1, 3, 5]
    assert details["dropped_layers"] == [0, 2, 4] and "block_influence" not in details


@pytest.mark.parametrize("n_drop", [LAYERS, LAYERS + 2])
def test_dropping_every_layer_is_refused(n_drop):
    with pytest.raises(InputError, match=rf"^drop_layers: cannot drop {n_drop} of the model's {LAYERS} layers; 1\.\.3"):
        prune(make(), BlockDropConfig(n_drop=n_drop, importance="even"))


def test_block_influence_without_a_task_is_refused():
    with pytest.raises(InputError, match="drop_layers: block influence .*calibration"):
        prune(make(), BlockDropConfig(n_drop=1))


def test_the_shape_reads_as_layers_of_the_teacher():
    teacher = make()
    _, details = prune(teacher, BlockDropConfig(n_drop=1), task=FakeTask(token_batches()))
    from orchestrator.techniques import StepRecord

    step = StepRecord.of(BlockDropConfig(n_drop=1), "blocks", details=details)
    shape = encoder_shape(teacher_structure(teacher), [step])
    assert (shape["encoder_layers"], shape["teacher_encoder_layers"]) == (LAYERS - 1, LAYERS)
    assert (shape["encoder_heads_per_layer"], shape["encoder_ffn_per_layer"]) == (HEADS, INTER)
    describe = techniques().get("transformer_prune").describe
    assert describe({**shape, "drop_layers": 1}, frozenset({"drop_layers"})) == ["3 of 4 layers"]
    assert describe({"drop_layers": 6}, frozenset({"drop_layers"})) == ["−6 layers"]  # no shape recorded


# --- the knobs in a recipe ---------------------------------------------------------------------------------


def test_the_depth_knobs_are_recipe_fields_and_make_a_block_drop_stage():
    assert {"drop_layers", "layer_importance"} <= set(Recipe.model_fields)
    teacher = Recipe()
    assert (teacher.drop_layers, teacher.layer_importance) == (0, "block_influence")
    assert Recipe(drop_layers=6).stages() == [BlockDropConfig(n_drop=6, importance="block_influence")]
    stages = Recipe(drop_layers=2, layer_importance="even", prune_heads_ratio=0.5).stages()
    assert stages == [BlockDropConfig(n_drop=2, importance="even"), HeadPruneConfig(ratio=0.5)]
    assert Recipe(drop_layers=2).key() != teacher.key()
    # Added after version 1: counted in a key only when set, so earlier run folders keep their keys.
    assert not any(techniques().knob(name).in_key_when_default for name in ("drop_layers", "layer_importance"))
    with pytest.raises(ValidationError, match="drop_layers"):
        Recipe(drop_layers=-1)
    with pytest.raises(ValidationError, match="layer_importance"):
        Recipe(drop_layers=1, layer_importance="random")


def test_a_recipe_setting_both_depth_knobs_is_refused():
    with pytest.raises(ValidationError, match="drop_layers: set either keep_layers .* or drop_layers .*not both"):
        Recipe(keep_layers=3, drop_layers=1)


def test_layer_importance_applies_only_where_blocks_are_dropped():
    registry = techniques()
    assert not registry.applies("layer_importance", {"drop_layers": 0})
    assert registry.applies("layer_importance", {"drop_layers": 2})


def test_the_seed_drops_the_fewest_blocks_the_space_allows():
    from orchestrator.techniques.domains import Choices, Range

    seeds = techniques().get("transformer_prune").seeds
    assert {"drop_layers": 2} in seeds({"drop_layers": Choices(choices=[0, 4, 2])}, 30)
    assert {"drop_layers": 1} in seeds({"drop_layers": Range(low=0, high=8)}, 30)
    assert not any("drop_layers" in s for s in seeds({"drop_layers": Choices(choices=[0])}, 30))
    assert not any("drop_layers" in s for s in seeds({"drop_layers": 4}, 4))  # never every layer


def test_apply_recipe_drops_blocks_on_a_decoder():
    teacher = make()
    task = FakeTask(token_batches())
    compressed = apply_recipe(task, Recipe(drop_layers=1, prune_ffn_ratio=0.25), teacher=teacher)
    blocks, ffn = compressed.record.steps
    assert blocks.technique == "blocks" and len(blocks.details["dropped_layers"]) == 1
    assert compressed.model.config.num_hidden_layers == LAYERS - 1
    assert n_params(compressed.model) == TOTAL - PER_LAYER - (LAYERS - 1) * (INTER // 4) * PER_NEURON
    assert n_params(teacher) == TOTAL  # the teacher is never modified


# --- a layout the table does not know -----------------------------------------------------------------------


def test_a_gpt2_layout_names_its_architecture_and_what_the_table_knows():
    model = CausalLM(GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=2, n_head=HEADS, n_positions=64)))
    with pytest.raises(ValueError) as error:
        apply_technique(model, HeadPruneConfig(ratio=0.5), ctx_for(model))
    message = str(error.value)
    assert message.startswith("GPT2LMHeadModel fits no encoder layout")
    assert "model_type 'gpt2'" in message and "transformer.h[i], 2 × GPT2Block" in message
    assert "still apply" in message and "int8" in message
    assert "Llama-style decoder" in message and "mlp.gate_proj, mlp.up_proj" in message


def test_a_fused_grouped_layout_is_refused_not_misread():
    # Phi-3: one qkv_proj for grouped-query attention and one gate_up_proj: no row describes it, and discovery declines.
    config = Phi3Config(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, intermediate_size=INTER, max_position_embeddings=64, pad_token_id=0,
    )  # fmt: skip
    model = CausalLM(Phi3ForCausalLM(config).eval())
    with pytest.raises(ValueError, match=r"^Phi3ForCausalLM fits no encoder layout .*model_type 'phi3'.*Phi3DecoderLayer"):
        structure_of(model)
