"""A recipe: every compression knob in one validated model, applied as prune → distill → quantize."""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from orchestrator.compress._registry import Context, StepRecord, TechniqueConfig, apply_technique
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
from orchestrator.runtimes._kernels import RUNTIME_BITS, Runtime
from orchestrator.tasks.base import Task

PruneMethod = Literal["none", "structured", "unstructured", "semi_structured_2_4"]
Bits = Literal[32, 16, 8, 4]
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
    kd_loss: Literal["auto", "cosine", "mse"] = "auto"
    kd_hidden_weight: float = Field(0.0, ge=0.0, le=100.0, description="transformers: weight of hidden-state matching")
    kd_steps: int = Field(0, ge=0)
    kd_learning_rate: float = Field(1e-3, gt=0)
    kd_batch_size: int = Field(64, ge=1)
    qat: bool = False
    runtime: Runtime = Field("eager", description="how the candidate is served: eager torch, torch.compile (inductor), or ONNX Runtime")
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
        if self.runtime != "eager" and self.bits not in RUNTIME_BITS:
            raise ValueError(
                f"runtime: {self.runtime!r} serves float32 or int8 models (bits 32 or 8), got bits={self.bits}; "
                "16-bit and int4 candidates run on the eager runtime"
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
        from orchestrator.runtimes import CompileConfig, OnnxRuntimeConfig, Pt2eInt8Config  # they register on the compress registry

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
        elif self.bits == 8 and self.runtime == "eager":
            stages.append(Int8Config())
        elif self.bits == 8 and self.runtime == "compiled":
            stages.append(Pt2eInt8Config())
        elif self.bits == 4:
            stages.append(Int4WeightOnlyConfig(group_size=self.int4_group_size))
        if self.runtime == "compiled":
            stages.append(CompileConfig())
        elif self.runtime == "onnxruntime":  # ONNX Runtime quantizes its own graph: int8 is part of its stage
            stages.append(OnnxRuntimeConfig(int8="auto" if self.bits == 8 else "none"))
        return stages


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
    """The compressed model and the record of how it was made."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: nn.Module
    record: CompressionRecord


def apply_recipe(
    task: Task,
    recipe: Recipe,
    device: str | torch.device = "cpu",
    teacher: nn.Module | None = None,
    on_eval: Callable[[int, float], None] | None = None,
    eval_every: int = 0,
    serving_batch_size: int = 64,
) -> Compressed:
    """Compress a copy of the task's teacher by the recipe: prune → distill → quantize.

    `on_eval(step, val_quality)` is called every `eval_every` distillation steps,
    so a scheduler can stop poor candidates early. The teacher is never modified.
    A runtime stage (compiled, onnxruntime) compiles or opens its session for
    `serving_batch_size` and times that cold start; it raises RuntimeFailed where it cannot run here.
    """
    device = torch.device(device)
    teacher = (teacher if teacher is not None else task.teacher()).eval()
    ctx = Context(
        task=task, teacher=teacher, device=device, on_eval=on_eval, eval_every=eval_every, serving_batch_size=serving_batch_size
    )
    model = copy.deepcopy(teacher)
    steps: list[StepRecord] = []
    for config in recipe.stages():
        model, step = apply_technique(model, config, ctx)
        steps.append(step)
    model = model.to(device).eval()
    record = summarize_steps(recipe, device, steps, ctx)
    if recipe.prune_method == "semi_structured_2_4":
        record.notes.append(_finish_two_four(model, recipe, steps))
    return Compressed(model=model, record=record)


def summarize_steps(recipe: Recipe, device: torch.device, steps: list[StepRecord], ctx: Context) -> CompressionRecord:
    """The recipe's record from its applied steps: fallbacks, acceleration, layers kept in float, deployed sizes."""
    record = CompressionRecord(recipe=recipe, device=str(device), steps=steps, notes=list(ctx.notes))
    for step in steps:
        record.fallbacks.extend(step.fallbacks)
        if step.stage == "quantize":
            record.accelerated = bool(step.details.get("accelerated", True))
            record.quantized_layers = list(step.details.get("quantized_layers", []))
            record.float_layers = list(step.details.get("float_layers", []))
            record.deployed_size_bytes = step.details.get("packed_size_bytes")
        if step.stage == "runtime" and "artifact_size_bytes" in step.details:
            record.deployed_size_bytes = step.details["artifact_size_bytes"]  # the ONNX file ONNX Runtime serves
        if step.stage == "prune" and "sparse_size_bytes" in step.details:
            record.sparse_size_bytes = step.details["sparse_size_bytes"]
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


INDEX_SUFFIX = "_index"  # numeric choices are sampled by position: `bits_index` for `bits`


def knob_of_param(param: str) -> str:
    """The knob an Optuna parameter samples (`bits_index` → `bits`); the search writes it, the report reads it."""
    stem = param.removesuffix(INDEX_SUFFIX)
    return stem if stem != param and stem in Recipe.model_fields else param
