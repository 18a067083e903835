"""Techniques: the knob declarations, configs and handlers that compression and serving runtimes both register on,
and the pieces they share.

This layer sits below `compress` and `runtimes`, so neither imports the other for the registries, the
int8 rule or a model's size.
"""

from orchestrator.techniques.int8 import Int8Settings, int8_mode, int8_torchao
from orchestrator.techniques.knobs import TECHNIQUES, UNSET, Knob, Knobs, Technique, TechniqueRegistry, always
from orchestrator.techniques.registry import (
    HANDLERS,
    Context,
    Handler,
    Stage,
    StepRecord,
    TechniqueConfig,
    apply_technique,
)
from orchestrator.techniques.sizes import count_params, weights_bytes

__all__ = [
    "HANDLERS", "TECHNIQUES", "UNSET", "Context", "Handler", "Int8Settings", "Knob", "Knobs", "Stage", "StepRecord",
    "Technique", "TechniqueConfig", "TechniqueRegistry", "always", "apply_technique", "count_params", "int8_mode",
    "int8_torchao", "weights_bytes",
]  # fmt: skip
