"""Weight-only int8 / int4 on CPU: torch's packed kernels behind float32 Linear layers, on a tiny Llama."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from orchestrator.compress import Context, Int4WeightOnlyConfig, apply_technique
from orchestrator.compress.quantize import Int8HeadConfig, Int8WeightOnlyConfig
from orchestrator.compress.recipe import Recipe
from orchestrator.compress.weight_only import (
    Int4WeightOnlyLinear,
    Int8WeightOnlyLinear,
    quantize_linear,
    stored_bytes,
    weight_only_quantize,
)
from orchestrator.errors import InputError
from orchestrator.tasks.llm.model import tiny_llama
from orchestrator.techniques import TECHNIQUES

KERNELS = {8: Int8WeightOnlyLinear, 4: Int4WeightOnlyLinear}
SERIAL_MATMULS = 4 * 4 + 1  # per decoder layer q/k/v → o and gate/up → down, then the head


class LLMTask:
    """Just what the quantize handlers read from a task."""

    sequence_inputs = ("input_ids",)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))


def quantized(model, bits, group_size=32, lm_head_bits=None):
    return weight_only_quantize(copy.deepcopy(model), bits, group_size, lm_head_bits)


def linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def rounding_error(weight: torch.Tensor, bits: int, group_size: int) -> float:
    """Expected relative RMS error of round-to-nearest on this weight: step / √12 over the weight's RMS.

    The step is what the kernels use: int8 max|w| / 127 per output row; int4 (max - min) / 15 per group of inputs.
    """
    if bits == 8:
        steps = weight.abs().amax(dim=1) / 127
    else:
        grouped = weight.reshape(weight.shape[0], -1, group_size)
        steps = (grouped.amax(-1) - grouped.amin(-1)) / 15
    return float(steps.pow(2).mean().sqrt() / math.sqrt(12) / weight.pow(2).mean().sqrt())


@pytest.mark.parametrize("bits", [8, 4])
def test_logits_stay_within_the_rounding_error_of_the_weights(llama, ids, bits):
    model, details = quantized(llama, bits)
    with torch.inference_mode():
        reference, out = llama(ids), model(ids)
    # Each quantized matmul perturbs its output by about its weight's relative rounding error; the residual stream
    # adds those perturbations, independent ones in quadrature, over the 17 matmuls in series. Measured: ~1.8×
    # the worst layer's error (int8 ≈ 1.2%, int4 ≈ 15%); √17 ≈ 4.1× leaves room, and a wrong scale, zero or
    # packing (errors of order 1) fails.
    worst = max(rounding_error(m.weight.detach(), bits, 32) for m in linears(llama).values())
    assert float((out - reference).norm() / reference.norm()) <= math.sqrt(SERIAL_MATMULS) * worst
    assert not torch.equal(out, reference), "rounding should show somewhere"
    assert details["accelerated"] and details["fallbacks"] == []


BF16_EPS = 2.0**-8  # bfloat16's spacing at 1: rounding to it moves a value by at most half of this, relatively


def make(bits, linear, compute_dtype=torch.bfloat16):
    return quantize_linear(linear, bits, 32, compute_dtype)[0]


@pytest.mark.parametrize("bits", [8, 4])
def test_the_kernel_computes_the_dequantized_weights(bits):
    linear = nn.Linear(128, 48)
    x = torch.randn(3, 5, 128)
    with torch.inference_mode():
        exact = make(bits, linear, torch.float32)  # the kernels' float32 path: only summation order differs
        assert torch.allclose(exact(x), nn.functional.linear(x, exact.dequantized_weight(), linear.bias), atol=1e-5)
        fast = make(bits, linear)
        weight = fast.dequantized_weight()
        # bf16 activations: the input rounded (½ eps of each term) and the product rounded (½ eps of the output).
        bound = BF16_EPS / 2 * (x.abs() @ weight.abs().t() + nn.functional.linear(x, weight).abs()) + 1e-5
        assert ((fast(x) - nn.functional.linear(x, weight, linear.bias)).abs() <= bound).all()
        assert fast(x).dtype == torch.float32


@pytest.mark.parametrize("bits", [8, 4])
def test_dequantized_weights_are_within_half_a_step_of_the_float_ones(bits):
    linear = nn.Linear(128, 48)
    module = make(bits, linear)
    weight = linear.weight.detach()
    if bits == 8:
        step = (weight.abs().amax(1, keepdim=True) / 127).expand_as(weight)
        # the scale is held in bf16, so the largest weight may sit up to 127 × ½ eps of a step past the last level
        slack = step * 127 * BF16_EPS / 2
    else:
        grouped = weight.reshape(48, 4, 32)
        step = ((grouped.amax(-1, keepdim=True) - grouped.amin(-1, keepdim=True)) / 15).expand_as(grouped)
        # bf16 scale and zero: the grid shifts by up to ½ eps of the zero (≤ the group's largest |w|) and of 15 steps
        slack = BF16_EPS / 2 * (15 * step + grouped.abs().amax(-1, keepdim=True))
        step, slack = step.reshape(48, 128), slack.reshape(48, 128)
    error = (module.dequantized_weight() - weight).abs()
    assert (error <= step / 2 + slack + 1e-7).all()
    assert error.mean() <= step.mean() / 4 * 1.1, "round to nearest: a quarter step on average"
    levels = module.dequantized_weight()[0, :32].unique()  # one group (int4) or part of a row (int8)
    assert len(levels) <= (16 if bits == 4 else 255)


@pytest.mark.parametrize(("bits", "bytes_per_weight"), [(8, 1.0), (4, 0.5)])
def test_linear_layers_become_packed_kernels_and_storage_shrinks(llama, bits, bytes_per_weight):
    model, details = quantized(llama, bits)
    floats = linears(llama)
    assert not any(isinstance(m, nn.Linear) for m in model.modules()), "every Linear of tiny_llama fits the kernels"
    assert details["quantized_layers"] == list(floats)
    for name, float_linear in floats.items():
        module = model.get_submodule(name)
        assert isinstance(module, KERNELS[bits])
        packed = module.weight_int8 if bits == 8 else module.weight_int4pack
        assert packed.dtype == (torch.int8 if bits == 8 else torch.uint8)
        assert packed.numel() * packed.element_size() == float_linear.weight.numel() * bytes_per_weight
    # By hand: every float tensor once (the tied head is untied, so the embedding stays) plus each layer's packed
    # weight and its bf16 scales (int8: one per row; int4: a scale and a zero per group of 32).
    float_bytes = sum(t.numel() * 4 for n, t in llama.named_parameters() if not n.startswith("hf.model.layers") or "norm" in n)
    packed_bytes = sum(
        m.weight.numel() * bytes_per_weight + (m.out_features * 2 if bits == 8 else m.weight.numel() // 32 * 4)
        for m in floats.values()
    )
    assert details["packed_size_bytes"] == stored_bytes(model) == float_bytes + packed_bytes
    assert details["packed_size_bytes"] < stored_bytes(llama)


def test_head_kept_float_stays_tied_to_the_embedding(llama, ids):
    model, details = quantized(llama, 4, lm_head_bits=32)
    head, embed = model.hf.lm_head, model.hf.model.embed_tokens
    assert type(head) is nn.Linear and head.weight is embed.weight, "a float head stays tied"
    assert "hf.lm_head" in details["float_layers"] and "hf.lm_head" not in details["quantized_layers"]
    assert not any("lm_head" in f for f in details["fallbacks"]), "kept float by choice, not a fallback"
    assert torch.equal(embed.weight, llama.hf.model.embed_tokens.weight)
    assert details["packed_size_bytes"] == stored_bytes(model)  # the tied table counted once


def test_quantized_head_unties_and_lookups_stay_float(llama, ids):
    model, details = quantized(llama, 8, lm_head_bits=4)
    assert isinstance(model.hf.lm_head, Int4WeightOnlyLinear) and details["layer_bits"]["hf.lm_head"] == 4
    assert isinstance(model.hf.model.layers[0].mlp.up_proj, Int8WeightOnlyLinear)
    embed = model.hf.model.embed_tokens
    assert type(embed) is nn.Embedding and torch.equal(embed.weight, llama.hf.model.embed_tokens.weight)
    assert torch.equal(embed(ids), llama.hf.model.embed_tokens(ids))
    assert any("unties" in note for note in details["notes"])
    table = embed.weight.numel() * 4
    head = model.hf.lm_head
    assert stored_bytes(model) >= table + head.weight_int4pack.numel() + head.scales_and_zeros.numel() * 2


def test_generate_with_a_kv_cache_after_quantization(llama):
    model, _ = quantized(llama, 4)
    prompt = torch.randint(0, 256, (2, 6), generator=torch.Generator().manual_seed(1))
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode():
        cached = model.hf.generate(prompt, use_cache=True, **settings)
        uncached = model.hf.generate(prompt, use_cache=False, **settings)
    assert cached.shape == (2, 12)
    assert torch.equal(cached, uncached), "the cache path must give the tokens a full recompute gives"


def test_quantizing_is_deterministic(llama, ids):
    first, _ = quantized(llama, 4)
    second, _ = quantized(llama, 4)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.inference_mode():
        assert torch.equal(first(ids), second(ids))


def test_layers_the_kernel_cannot_take_stay_float_with_a_reason(llama, ids):
    model, details = quantized(llama, 4, group_size=128)  # down_proj has 128 inputs; the rest have 64
    assert [n for n in details["quantized_layers"]] == [n for n in linears(llama) if n.endswith("down_proj")]
    assert isinstance(model.hf.model.layers[0].self_attn.q_proj, nn.Linear)
    assert "hf.model.layers.0.self_attn.q_proj: stays float32 (in_features 64 is not a multiple of the group size 128)" in details["fallbacks"]
    assert len(details["fallbacks"]) == len(details["float_layers"]) == len(linears(llama)) - 4
    with torch.inference_mode():
        assert model(ids).shape == (4, 16, 256)
    _odd, odd_details = weight_only_quantize(nn.Sequential(nn.Linear(64, 10), nn.Linear(10, 32)), 4, 32)
    assert odd_details["fallbacks"] == [
        "0: stays float32 (out_features 10 is not a multiple of 16)",
        "1: stays float32 (in_features 10 is not a multiple of the group size 32)",
    ]
    _, int8_details = weight_only_quantize(nn.Sequential(nn.Linear(64, 10), nn.Linear(10, 32)), 8)
    assert int8_details["quantized_layers"] == ["0", "1"], "the int8 kernel takes any shape"
    _, small_groups = quantized(llama, 4, group_size=16)
    assert small_groups["quantized_layers"] == [] and "takes groups of 32, 64, 128, 256" in small_groups["fallbacks"][0]


def test_bad_widths_are_refused_naming_the_field(llama):
    with pytest.raises(InputError, match="bits: weight-only quantization takes 8 or 4, got 16"):
        weight_only_quantize(llama, 16)
    with pytest.raises(InputError, match="lm_head_bits: expected 32, 8, 4 or None"):
        weight_only_quantize(llama, 8, lm_head_bits=16)


# --- the quantize technique -----------------------------------------------------------------------


def ctx_for(model):
    return Context(task=LLMTask(), teacher=model, device=torch.device("cpu"))


def test_int4_on_cpu_is_real_on_a_linear_only_model(llama, ids):
    model, record = apply_technique(copy.deepcopy(llama), Int4WeightOnlyConfig(group_size=64), ctx_for(llama))
    assert record.technique == "int4_weight_only" and record.details["accelerated"] is True
    assert record.details["backend"] == "aten_int4pack_cpu" and record.fallbacks == []
    assert isinstance(model.hf.model.layers[0].mlp.gate_proj, Int4WeightOnlyLinear)
    assert model.hf.model.layers[0].mlp.gate_proj.group_size == 64
    assert record.details["packed_size_bytes"] == stored_bytes(model)


def test_int8_weight_only_handler_and_head_fp32(llama):
    model, record = apply_technique(copy.deepcopy(llama), Int8WeightOnlyConfig(lm_head_bits=32), ctx_for(llama))
    assert record.technique == "int8_weight_only" and record.details["activations"] == "float32"
    assert type(model.hf.lm_head) is nn.Linear and isinstance(model.hf.model.layers[3].self_attn.o_proj, Int8WeightOnlyLinear)
    assert record.details["float_layers"] == ["hf.lm_head"] and record.fallbacks == []


def test_dynamic_int8_with_a_float_head(llama, ids):
    model, record = apply_technique(copy.deepcopy(llama), Int8HeadConfig(lm_head_bits=32), ctx_for(llama))
    assert record.technique == "int8_dynamic_head_fp32" and record.details["mode"] == "dynamic"
    assert type(model.hf.lm_head) is nn.Linear and record.fallbacks == []
    assert type(model.hf.model.layers[0].mlp.up_proj).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert "hf.lm_head" not in record.details["quantized_layers"]
    head4, record4 = apply_technique(copy.deepcopy(llama), Int8HeadConfig(lm_head_bits=4), ctx_for(llama))
    assert isinstance(head4.hf.lm_head, Int4WeightOnlyLinear) and "hf.lm_head" in record4.details["quantized_layers"]
    with torch.inference_mode():
        assert head4(ids).shape == (4, 16, 256)


@pytest.mark.parametrize(
    ("knobs", "text", "stage"),
    [
        ({"bits": 8}, ["int8"], "Int8Config"),
        ({"bits": 8, "int8_activations": "float"}, ["int8 weight-only"], "Int8WeightOnlyConfig"),
        ({"bits": 4, "int4_group_size": 64}, ["int4 g64"], "Int4WeightOnlyConfig"),
        ({"bits": 8, "lm_head_bits": 32}, ["int8", "head fp32"], "Int8HeadConfig"),
        ({"bits": 4, "int4_group_size": 32, "lm_head_bits": 8}, ["int4 g32", "head int8"], "Int4WeightOnlyConfig"),
        ({"bits": 8, "int8_activations": "float", "lm_head_bits": 8}, ["int8 weight-only"], "Int8WeightOnlyConfig"),
        ({"bits": 8, "int8_activations": "float", "lm_head_bits": 4, "int4_group_size": 64},
         ["int8 weight-only", "head int4 g64"], "Int8WeightOnlyConfig"),
    ],
)
def test_recipe_stages_and_describe(knobs, text, stage):
    recipe = Recipe(**knobs)
    assert [type(c).__name__ for c in recipe.stages()] == [stage]
    shown = frozenset(TECHNIQUES.names())
    assert TECHNIQUES.get("quantize").describe({**recipe.knobs(), **knobs}, shown) == text


def test_new_knobs_at_their_defaults_keep_older_recipe_keys():
    assert Recipe(bits=8).key() == Recipe(bits=8, int8_activations="dynamic", lm_head_bits=None).key()
    assert Recipe(bits=8).key() != Recipe(bits=8, int8_activations="float").key()
    assert Recipe(bits=8, lm_head_bits=4).stages()[0].group_size == 32  # the int4 head's groups: int4_group_size
    assert TECHNIQUES.applies("int4_group_size", {"bits": 8, "lm_head_bits": 4})
    assert not TECHNIQUES.applies("int4_group_size", {"bits": 8})


@pytest.mark.parametrize("knobs", [{"int8_activations": "float"}, {"lm_head_bits": 32}])
def test_a_runtime_that_quantizes_int8_itself_refuses_weight_only_and_head_widths(knobs):
    with pytest.raises(ValueError, match="runtime 'onnxruntime' quantizes int8 itself .* use runtime 'eager'"):
        Recipe(bits=8, runtime="onnxruntime", **knobs)
    assert Recipe(bits=8, runtime="eager", **knobs).stages()
