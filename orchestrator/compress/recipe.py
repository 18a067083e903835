"""A recipe: every compression knob in one validated model, applied as prune → distill → quantize."""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from orchestrator.compress.distill import DistillConfig
from orchestrator.compress.prune import (
    MAX_PRUNE_RATIO,
    SemiStructured24Config,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
    to_semi_structured,
)
from orchestrator.compress.quantize import HalfPrecisionConfig, Int4WeightOnlyConfig, Int8Config
from orchestrator.compress.transformer_prune import FFNPruneConfig, HeadPruneConfig, LayerDropConfig
from orchestrator.runtimes import REGISTRY
from orchestrator.tasks.base import Task
from orchestrator.techniques import Context, StepRecord, TechniqueConfig, apply_technique
from orchestrator.techniques.details import PruneDetails, QuantizeDetails, RuntimeDetails

PruneMethod = Literal["none", "structured", "unstructured", "semi_structured_2_4"]
Bits = Literal[32, 16, 8, 4]
RuntimeName = Literal[REGISTRY.names]  # type: ignore[valid-type]  # the registered runtimes' names
RECIPE_VERSION = 1
LATER_KNOBS = ("prune_heads_ratio", "prune_ffn_ratio", "keep_layers", "kd_loss", "kd_hidden_weight", "runtime")


class Recipe(BaseModel):
    """Every knob of one candidate. Round-trips through JSON, so export rebuilds what a trial measured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = RECIPE_VERSION
    prune_method: PruneMethod = "none"
    prune_ratio: float = Field(0.0, ge=0.0, le=MAX_PRUNE_RATIO)
    prune_importance: Literal["l1", "l2"] = "l2"
    prune_scope: Literal["global", "layer"] = "global"
    prune_heads_ratio: float = Field(0.0, ge=0.0, le=MAX_PRUNE_RATIO, description="transformers: share of attention heads removed per layer")
    prune_ffn_ratio: float = Field(0.0, ge=0.0, le=MAX_PRUNE_RATIO, description="transformers: share of FFN neurons removed per layer")
    keep_layers: int | None = Field(None, ge=1, description="transformers: encoder layers kept, evenly spread (None: all)")
    bits: Bits = 32
    int4_group_size: int = Field(32, ge=8)
    kd_temperature: float = Field(4.0, gt=0)
    kd_alpha: float = Field(0.7, ge=0.0, le=1.0)
    kd_loss: Literal["auto", "cosine", "mse", "contrastive"] = "auto"
    kd_hidden_weight: float = Field(0.0, ge=0.0, le=100.0, description="transformers: weight of hidden-state matching")
    kd_steps: int = Field(0, ge=0)
    kd_learning_rate: float = Field(1e-3, gt=0)
    kd_batch_size: int = Field(64, ge=1)
    qat: bool = False
    runtime: RuntimeName = Field("eager", description="how the candidate is served: eager torch, torch.compile (inductor), or ONNX Runtime")
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _two_four_ratio(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("prune_method") == "semi_structured_2_4" and "prune_ratio" not in data:
            data = {**data, "prune_ratio": 0.5}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Recipe":
        if self.prune_method == "none" and self.prune_ratio > 0:
            raise ValueError("prune_ratio: must be 0 when prune_method is 'none'")
        if self.prune_method == "semi_structured_2_4" and self.prune_ratio != 0.5:
            raise ValueError("prune_ratio: semi_structured_2_4 always prunes 50% (2 of every 4); set 0.5 or leave it out")
        if self.qat and self.bits > 8:
            raise ValueError(f"qat: quantization-aware training needs bits <= 8, got bits={self.bits}")
        runtime = REGISTRY.get(self.runtime)
        if self.bits not in runtime.bits:
            raise ValueError(
                f"runtime: {self.runtime!r} serves {runtime.describe_bits()}, got bits={self.bits}; "
                f"{self.bits}-bit candidates run on the {' or '.join(REGISTRY.serving(self.bits))} runtime"
            )
        if self.qat and self.kd_steps == 0:
            raise ValueError("qat: quantization-aware training happens during distillation; set kd_steps > 0")
        return self

    def key(self) -> str:
        """Stable hash of the knobs: the same recipe always gets the same key.

        Knobs added after version 1 count only when set, so earlier run folders keep their keys.
        """
        unset = {name for name in LATER_KNOBS if getattr(self, name) == Recipe.model_fields[name].default}
        return hashlib.sha256(self.model_dump_json(exclude=unset).encode()).hexdigest()[:16]

    def stages(self) -> list[TechniqueConfig]:
        """The technique configs this recipe applies, in order."""
        runtime = REGISTRY.get(self.runtime)
        stages: list[TechniqueConfig] = []
        if self.keep_layers is not None:
            stages.append(LayerDropConfig(keep_layers=self.keep_layers))
        if self.prune_heads_ratio > 0:
            stages.append(HeadPruneConfig(ratio=self.prune_heads_ratio))
        if self.prune_ffn_ratio > 0:
            stages.append(FFNPruneConfig(ratio=self.prune_ffn_ratio))
        if self.prune_method == "structured":
            stages.append(StructuredPruneConfig(ratio=self.prune_ratio, importance=self.prune_importance))
        elif self.prune_method == "unstructured":
            stages.append(UnstructuredPruneConfig(ratio=self.prune_ratio, scope=self.prune_scope))
        elif self.prune_method == "semi_structured_2_4":
            stages.append(SemiStructured24Config())
        if self.kd_steps > 0:
            stages.append(
                DistillConfig(
                    temperature=self.kd_temperature,
                    alpha=self.kd_alpha,
                    loss=self.kd_loss,
                    hidden_weight=self.kd_hidden_weight,
                    steps=self.kd_steps,
                    learning_rate=self.kd_learning_rate,
                    batch_size=self.kd_batch_size,
                    qat_bits=self.bits if self.qat else None,
                    qat_group_size=self.int4_group_size if self.qat and self.bits == 4 else None,
                    preserve_sparsity=self.prune_method in ("unstructured", "semi_structured_2_4"),
                    seed=self.seed,
                )
            )
        if self.bits == 16:
            stages.append(HalfPrecisionConfig())
        elif self.bits == 8 and not runtime.quantizes_int8():
            stages.append(Int8Config())
        elif self.bits == 4:
            stages.append(Int4WeightOnlyConfig(group_size=self.int4_group_size))
        return stages + runtime.stages(self.bits)  # a runtime that quantizes its own program adds its int8 stage here


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
        if step.stage == "quantize":
            quantized = QuantizeDetails.of(step)
            record.accelerated = quantized.accelerated
            record.quantized_layers = list(quantized.quantized_layers)
            record.float_layers = list(quantized.float_layers)
            record.deployed_size_bytes = quantized.packed_size_bytes
        if step.stage == "runtime" and RuntimeDetails.of(step).artifact_size_bytes is not None:
            record.deployed_size_bytes = RuntimeDetails.of(step).artifact_size_bytes  # the file the runtime serves (ONNX)
        if step.stage == "prune" and PruneDetails.of(step).sparse_size_bytes is not None:
            record.sparse_size_bytes = PruneDetails.of(step).sparse_size_bytes
    return record


def _finish_two_four(model: nn.Module, recipe: Recipe, steps: list[StepRecord]) -> str:
    if recipe.bits not in (16,):
        return (
            f"2:4 weights kept dense: sparse semi-structured kernels are used here with 16-bit weights only, "
            f"and this recipe has bits={recipe.bits}"
        )
    pruned = next(s for s in steps if s.stage == "prune").details["pruned_layers"]
    converted = to_semi_structured(model, pruned)
    return f"2:4 sparse kernels on {len(converted)} Linear layers: {', '.join(converted)}"

