"""A recipe: every knob of one candidate in one validated model, applied as prune → distill → quantize → runtime.

The Recipe's fields are the knobs the registered techniques declare (techniques/knobs.py), in the order
registered below: one line per technique. A package adds its own through the `hedgerow.techniques` entry
point, loaded here before the Recipe is built.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Annotated, Any, Callable, Literal

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, model_validator
from torch import nn

from orchestrator.compress import distill, prune, quantize, transformer_prune
from orchestrator.compress.prune import to_semi_structured
from orchestrator.runtimes import RUNTIME_KNOB
from orchestrator.tasks.base import Task
from orchestrator.techniques import (
    TECHNIQUES,
    UNSET,
    Context,
    Knob,
    Stage,
    StepRecord,
    TechniqueConfig,
    TechniqueRegistry,
    apply_technique,
)
from orchestrator.techniques.details import PruneDetails, QuantizeDetails, RuntimeDetails

TECHNIQUES.add(prune.TECHNIQUE)
TECHNIQUES.add(transformer_prune.TECHNIQUE)
TECHNIQUES.add(quantize.TECHNIQUE)
TECHNIQUES.add(distill.TECHNIQUE)
TECHNIQUES.add(RUNTIME_KNOB)
TECHNIQUES.load_plugins()
RECIPE_VERSION = 1


class RecipeBase(BaseModel):
    """Every knob of one candidate. Round-trips through JSON, so export rebuilds what a trial measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _forced(cls, data: Any) -> Any:
        """A knob left out takes the value the other knobs fix it to, where they do (2:4 prunes 50%)."""
        if not isinstance(data, dict):
            return data
        given = dict(data)
        decided = TECHNIQUES.with_defaults(given)
        for knob in TECHNIQUES.sampling_order():
            if knob.name in given:
                continue
            try:
                forced = knob.forced(decided) if knob.applies(decided) else UNSET
            except (TypeError, ValueError, KeyError, IndexError):
                continue  # another knob's value is invalid: field validation names it
            if forced is not UNSET:
                given[knob.name] = forced
        return given

    @model_validator(mode="after")
    def _consistent(self) -> "RecipeBase":
        for technique in TECHNIQUES:
            problems = technique.check(self)
            if problems:
                raise ValueError(problems[0])
        return self

    def key(self) -> str:
        """Stable hash of the knobs: the same recipe always gets the same key.

        Knobs added after version 1 count only when set, so earlier run folders keep their keys.
        """
        unset = {k.name for k in TECHNIQUES.knobs() if not k.in_key_when_default and getattr(self, k.name) == k.default}
        return hashlib.sha256(self.model_dump_json(exclude=unset).encode()).hexdigest()[:16]

    def stages(self) -> list[TechniqueConfig]:
        """The technique configs this recipe applies, in pipeline order (each technique's `stage_order`)."""
        ordered = sorted(TECHNIQUES, key=lambda t: t.stage_order)
        return [config for technique in ordered for config in technique.stages(self)]

    def knobs(self) -> dict[str, Any]:
        """The knob values, as JSON holds them."""
        return self.model_dump(mode="json", exclude={"version", "seed"})


def _one_of(knob: Knob) -> Callable[[Any], Any]:
    """A validator for a knob whose values a registry holds (asked when a value is checked)."""

    def check(value: Any) -> Any:
        allowed = tuple(knob.allowed()) if knob.allowed else ()
        if value not in allowed:
            listed = ", ".join(repr(v) for v in allowed[:-1]) + f" or {allowed[-1]!r}" if len(allowed) > 1 else repr(allowed)
            raise ValueError(f"Input should be {listed}")
        return value

    return check


def _field(knob: Knob) -> tuple[Any, Any]:
    annotation = Annotated[knob.annotation, AfterValidator(_one_of(knob))] if knob.allowed else knob.annotation
    return annotation, Field(knob.default, description=knob.description or None, **knob.bounds)


def build_recipe_model() -> type[RecipeBase]:
    """The Recipe model of the registered techniques' knobs; the registry takes no technique after this."""
    TECHNIQUES.freeze()
    fields: dict[str, Any] = {"version": (Literal[1], RECIPE_VERSION)}
    fields.update({knob.name: _field(knob) for knob in TECHNIQUES.knobs()})
    fields["seed"] = (int, 0)
    return create_model("Recipe", __base__=RecipeBase, __module__=__name__, __doc__=RecipeBase.__doc__, **fields)


Recipe = build_recipe_model()


def techniques() -> TechniqueRegistry:
    """The techniques a Recipe is made of, registered above (and by plug-ins), in Recipe order."""
    return TECHNIQUES


class CompressionRecord(BaseModel):
    """What apply_recipe did, step by step, with fallbacks; stored with every trial."""

    recipe: Recipe
    device: str
    steps: list[StepRecord]
    accelerated: bool = True
    quantized_layers: list[str] = []
    float_layers: list[str] = []
    fallbacks: list[str] = []
    deployed_size_bytes: int | None = Field(None, description="set when the deployed format differs from state_dict")
    sparse_size_bytes: int | None = None
    notes: list[str] = []

    def to_json(self) -> str:
        """The record as JSON (also what export replays)."""
        return self.model_dump_json(indent=2)


class Compressed(BaseModel):
    """The compressed model, the record of how it was made, and (when asked for) the float model before its last stages."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: nn.Module
    record: CompressionRecord
    float_model: nn.Module | None = Field(None, description="the model where its float weights end (before quantization or a runtime)")
    float_steps: int | None = Field(None, description="how many of the record's steps built the float model")


def apply_recipe(
    task: Task,
    recipe: Recipe,
    device: str | torch.device = "cpu",
    teacher: nn.Module | None = None,
    on_eval: Callable[[int, float], None] | None = None,
    eval_every: int = 0,
    serving_batch_size: int = 64,
    keep_float_model: bool = False,
) -> Compressed:
    """Compress a copy of the task's teacher by the recipe: prune → distill → quantize.

    `on_eval(step, val_quality)` is called every `eval_every` distillation steps,
    so a scheduler can stop poor candidates early. The teacher is never modified.
    A runtime stage (compiled, onnxruntime) compiles or opens its session for
    `serving_batch_size` and times that cold start; it raises RuntimeFailed where it cannot run here.
    With `keep_float_model`, a copy of the model is kept where its float weights end (the first
    stage whose config does not keep them), for export to write beside the served program.
    """
    device = torch.device(device)
    teacher = (teacher if teacher is not None else task.teacher()).eval()
    ctx = Context(
        task=task, teacher=teacher, device=device, on_eval=on_eval, eval_every=eval_every, serving_batch_size=serving_batch_size
    )
    model = copy.deepcopy(teacher)
    steps: list[StepRecord] = []
    float_model, float_steps = None, None
    for config in recipe.stages():
        if keep_float_model and float_model is None and not config.keeps_float_weights:
            float_model, float_steps = copy.deepcopy(model).cpu().eval(), len(steps)
        model, step = apply_technique(model, config, ctx)
        steps.append(step)
    model = model.to(device).eval()
    if keep_float_model and float_model is None:  # no stage ended the float weights: the model is them
        float_steps = len(steps)
    record = summarize_steps(recipe, device, steps, ctx)
    if recipe.prune_method == "semi_structured_2_4":
        record.notes.append(_finish_two_four(model, recipe, steps))
    return Compressed(model=model, record=record, float_model=float_model, float_steps=float_steps)


def summarize_steps(recipe: Recipe, device: torch.device, steps: list[StepRecord], ctx: Context) -> CompressionRecord:
    """The recipe's record from its applied steps: fallbacks, acceleration, layers kept in float, deployed sizes."""
    record = CompressionRecord(recipe=recipe, device=str(device), steps=steps, notes=list(ctx.notes))
    for step in steps:
        record.fallbacks.extend(step.fallbacks)
        if step.stage is Stage.QUANTIZE:
            quantized = QuantizeDetails.of(step)
            record.accelerated = quantized.accelerated
            record.quantized_layers = list(quantized.quantized_layers)
            record.float_layers = list(quantized.float_layers)
            record.deployed_size_bytes = quantized.packed_size_bytes
        if step.stage is Stage.RUNTIME and RuntimeDetails.of(step).artifact_size_bytes is not None:
            record.deployed_size_bytes = RuntimeDetails.of(step).artifact_size_bytes  # the file the runtime serves (ONNX)
        if step.stage is Stage.PRUNE and PruneDetails.of(step).sparse_size_bytes is not None:
            record.sparse_size_bytes = PruneDetails.of(step).sparse_size_bytes
    return record


def _finish_two_four(model: nn.Module, recipe: RecipeBase, steps: list[StepRecord]) -> str:
    if recipe.bits not in (16,):
        return (
            f"2:4 weights kept dense: sparse semi-structured kernels are used here with 16-bit weights only, "
            f"and this recipe has bits={recipe.bits}"
        )
    pruned = next(s for s in steps if s.stage is Stage.PRUNE).details["pruned_layers"]
    converted = to_semi_structured(model, pruned)
    return f"2:4 sparse kernels on {len(converted)} Linear layers: {', '.join(converted)}"

