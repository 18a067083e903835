"""The recipe: validated knobs, JSON round trip, prune → distill → quantize, and the record it leaves."""

from __future__ import annotations

import copy

import pydantic
import pytest
import torch

from orchestrator.compress import (
    Context,
    DistillConfig,
    Int4WeightOnlyConfig,
    Int8Config,
    Recipe,
    StructuredPruneConfig,
    TechniqueConfig,
    UnstructuredPruneConfig,
    apply_recipe,
    apply_technique,
)
from orchestrator.compress.recipe import CompressionRecord
from orchestrator.errors import UnsupportedOnDevice


def test_stages_run_in_the_order_prune_distill_quantize():
    recipe = Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=10, bits=8)
    assert [type(c) for c in recipe.stages()] == [StructuredPruneConfig, DistillConfig, Int8Config]
    assert Recipe().stages() == []
    assert [type(c) for c in Recipe(bits=4).stages()] == [Int4WeightOnlyConfig]


def test_stages_carry_the_knobs():
    recipe = Recipe(
        prune_method="unstructured",
        prune_ratio=0.6,
        prune_scope="layer",
        kd_steps=5,
        kd_alpha=0.3,
        bits=4,
        qat=True,
        int4_group_size=64,
    )
    prune, distill, quantize = recipe.stages()
    assert prune == UnstructuredPruneConfig(ratio=0.6, scope="layer")
    assert distill.alpha == 0.3 and distill.steps == 5
    assert distill.qat_bits == 4 and distill.qat_group_size == 64
    assert distill.preserve_sparsity is True, "fine-tuning an unstructured model must keep its zeros"
    assert quantize == Int4WeightOnlyConfig(group_size=64)
    assert Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=5).stages()[1].preserve_sparsity is False


def test_apply_recipe_records_one_step_per_stage_with_fallbacks(digits_task, teacher):
    recipe = Recipe(prune_method="unstructured", prune_ratio=0.5, kd_steps=3, bits=4)
    compressed = apply_recipe(digits_task, recipe, teacher=teacher)
    record = compressed.record
    assert [(s.stage, s.technique) for s in record.steps] == [
        ("prune", "unstructured"),
        ("distill", "kd"),
        ("quantize", "int4_fake"),
    ]
    assert record.recipe == recipe and record.device == "cpu"
    assert record.accelerated is False
    assert record.fallbacks == record.steps[2].fallbacks and "not accelerated on this device" in record.fallbacks[0]
    assert record.deployed_size_bytes == record.steps[2].details["packed_size_bytes"]
    assert record.sparse_size_bytes == record.steps[0].details["sparse_size_bytes"]
    assert record.quantized_layers == record.steps[2].details["quantized_layers"]
    assert all(s.seconds >= 0 for s in record.steps)
    assert CompressionRecord.model_validate_json(record.to_json()) == record
    assert not compressed.model.training
    assert digits_task.evaluate(compressed.model, "val")["value"] >= 0.9


def test_apply_recipe_stages_really_compose(digits_task, teacher):
    compressed = apply_recipe(digits_task, Recipe(prune_method="structured", prune_ratio=0.5, bits=8), teacher=teacher)
    prune, quantize = compressed.record.steps
    assert prune.details["layer_widths"]["features.0"] == 32
    assert quantize.technique == "int8_static"
    first_conv = getattr(compressed.model.features, "0")  # a GraphModule: its Sequentials became plain Modules
    assert first_conv.out_channels == 32 and "quantized" in type(first_conv).__module__


def test_apply_recipe_never_mutates_the_teacher(digits_task, teacher):
    before = copy.deepcopy(teacher.state_dict())
    recipe = Recipe(prune_method="structured", prune_ratio=0.5, kd_steps=3, bits=16)
    model = apply_recipe(digits_task, recipe, teacher=teacher).model
    assert model is not teacher
    after = teacher.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())
    assert not teacher.training and teacher.features[0].weight.dtype == torch.float32


def test_apply_recipe_uses_the_tasks_teacher_by_default(digits_task, teacher):
    compressed = apply_recipe(digits_task, Recipe())
    assert compressed.record.steps == []
    reference = teacher.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in compressed.model.state_dict().items())


def test_apply_recipe_forwards_on_eval(digits_task, teacher):
    calls = []
    apply_recipe(digits_task, Recipe(kd_steps=4), teacher=teacher, on_eval=lambda s, v: calls.append(s), eval_every=2)
    assert calls == [2, 4]


def test_two_four_recipe_on_cpu_fails_clearly(digits_task, teacher):
    with pytest.raises(UnsupportedOnDevice, match="not supported on this device"):
        apply_recipe(digits_task, Recipe(prune_method="semi_structured_2_4", bits=16), teacher=teacher)


def test_json_round_trip_is_equal_with_the_same_key():
    recipe = Recipe(
        prune_method="structured",
        prune_ratio=0.35,
        prune_importance="l1",
        kd_steps=200,
        kd_temperature=2.5,
        bits=8,
        qat=True,
        seed=7,
    )
    again = Recipe.model_validate_json(recipe.model_dump_json())
    assert again == recipe and again.key() == recipe.key()
    assert again.stages() == recipe.stages()
    assert Recipe.model_validate_json(Recipe().model_dump_json()) == Recipe()


def test_key_differs_between_recipes():
    assert Recipe(bits=8).key() != Recipe(bits=4).key()
    assert Recipe(seed=1).key() != Recipe(seed=2).key()
    assert len(Recipe().key()) == 16


def test_recipe_is_frozen():
    with pytest.raises(pydantic.ValidationError):
        Recipe().bits = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    "knobs,field",
    [
        ({"prune_method": "structured", "prune_ratio": 0.96}, "prune_ratio"),
        ({"prune_method": "structured", "prune_ratio": -0.1}, "prune_ratio"),
        ({"bits": 3}, "bits"),
        ({"prune_method": "channel"}, "prune_method"),
        ({"prune_importance": "l3"}, "prune_importance"),
        ({"kd_stepz": 10}, "kd_stepz"),
        ({"int4_group_size": 4}, "int4_group_size"),
        ({"prune_ratio": 0.5}, "prune_ratio"),  # a ratio with prune_method 'none'
    ],
)
def test_bad_input_names_the_field(knobs, field):
    with pytest.raises(pydantic.ValidationError) as info:
        Recipe(**knobs)
    assert field in str(info.value)


def test_bad_literal_says_what_is_expected():
    with pytest.raises(pydantic.ValidationError, match="'structured'"):
        Recipe(prune_method="channel")
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        Recipe(kd_stepz=10)


def test_qat_needs_low_bits_and_distillation():
    with pytest.raises(pydantic.ValidationError, match="qat: quantization-aware training needs bits <= 8, got bits=32"):
        Recipe(qat=True, kd_steps=10, bits=32)
    with pytest.raises(pydantic.ValidationError, match="qat: .*set kd_steps > 0"):
        Recipe(qat=True, bits=8)
    assert Recipe(qat=True, kd_steps=10, bits=8).stages()[0].qat_bits == 8


def test_two_four_defaults_to_half_and_refuses_any_other_ratio():
    recipe = Recipe(prune_method="semi_structured_2_4")
    assert recipe.prune_ratio == 0.5
    assert Recipe.model_validate_json(recipe.model_dump_json()) == recipe
    with pytest.raises(pydantic.ValidationError, match="prune_ratio: semi_structured_2_4 always prunes 50%"):
        Recipe(prune_method="semi_structured_2_4", prune_ratio=0.3)


def test_a_config_with_no_handler_is_a_type_error_naming_it(digits_task, teacher):
    class MysteryConfig(TechniqueConfig):
        level: int = 1

    ctx = Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))
    with pytest.raises(TypeError, match="no handler registered for MysteryConfig; registered configs: .*Int8Config"):
        apply_technique(teacher, MysteryConfig(), ctx)


def test_technique_configs_refuse_unknown_fields():
    with pytest.raises(pydantic.ValidationError, match="ratoi"):
        StructuredPruneConfig(ratio=0.5, ratoi=0.4)
