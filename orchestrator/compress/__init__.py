"""Compression techniques (each a config, a handler and the knobs it declares) and the recipe composing them."""

from orchestrator.compress.distill import DistillConfig
from orchestrator.compress.prune import SemiStructured24Config, StructuredPruneConfig, UnstructuredPruneConfig
from orchestrator.compress.quantize import CastInput, HalfPrecisionConfig, Int4WeightOnlyConfig, Int8Config
from orchestrator.compress.recipe import Compressed, CompressionRecord, Recipe, apply_recipe
from orchestrator.techniques import Context, StepRecord, TechniqueConfig, apply_technique

__all__ = [
    "CastInput", "Compressed", "CompressionRecord", "Context", "DistillConfig", "HalfPrecisionConfig",
    "Int4WeightOnlyConfig", "Int8Config", "Recipe", "SemiStructured24Config", "StepRecord",
    "StructuredPruneConfig", "TechniqueConfig", "UnstructuredPruneConfig", "apply_recipe", "apply_technique",
]  # fmt: skip
