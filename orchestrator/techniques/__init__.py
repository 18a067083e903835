"""Techniques: the config + handler registry that compression and serving runtimes both register on, and the pieces they share.

This layer sits below `compress` and `runtimes`, so neither imports the other for
the registry, the int8 rule or a model's size.
"""

from orchestrator.techniques.int8 import Int8Settings, int8_mode, int8_torchao
from orchestrator.techniques.registry import Context, Handler, StepRecord, TechniqueConfig, apply_technique, register
from orchestrator.techniques.sizes import count_params, weights_bytes

__all__ = [
    "Context", "Handler", "Int8Settings", "StepRecord", "TechniqueConfig", "apply_technique", "count_params",
    "int8_mode", "int8_torchao", "register", "weights_bytes",
]  # fmt: skip
