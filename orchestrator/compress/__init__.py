"""Compression techniques (each a config plus one registered function) and the recipe composing them."""

from orchestrator.techniques import Context, StepRecord, TechniqueConfig, apply_technique, register
from orchestrator.compress.distill import DistillConfig, kd_loss, regression_kd_loss
from orchestrator.compress.prune import SemiStructured24Config, StructuredPruneConfig, UnstructuredPruneConfig
from orchestrator.compress.quantize import CastInput, HalfPrecisionConfig, Int4WeightOnlyConfig, Int8Config
from orchestrator.compress.recipe import Compressed, CompressionRecord, Recipe, apply_recipe

__all__ = [
    "CastInput", "Compressed", "CompressionRecord", "Context", "DistillConfig", "HalfPrecisionConfig",
    "Int4WeightOnlyConfig", "Int8Config", "Recipe", "SemiStructured24Config", "StepRecord",
    "StructuredPruneConfig", "TechniqueConfig", "UnstructuredPruneConfig", "apply_recipe",
    "apply_technique", "kd_loss", "regression_kd_loss", "register",
]  # fmt: skip
