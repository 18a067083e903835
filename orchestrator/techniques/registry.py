"""Technique registry: each config type maps to the one function that applies it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from orchestrator.tasks.base import Task


class TechniqueConfig(BaseModel):
    """Base of every technique's config: frozen, no unknown fields.

    `keeps_float_weights` says whether the model after this stage is still float weights
    a torch module holds: False for quantization and for a runtime taking the model over,
    so export knows where the float model ends (the one place that is declared).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    keeps_float_weights: ClassVar[bool] = True


class StepRecord(BaseModel):
    """What one technique did: its config, what it changed, and any fallbacks taken."""

    stage: str
    technique: str
    config: dict[str, Any]
    details: dict[str, Any] = {}
    fallbacks: list[str] = []
    seconds: float = 0.0


@dataclass
class Context:
    """What a technique may need besides the model: the task, teacher, device and a progress hook."""

    task: Task
    teacher: nn.Module
    device: torch.device
    on_eval: Callable[[int, float], None] | None = None
    eval_every: int = 0
    serving_batch_size: int = 64  # the batch a runtime stage compiles for and times its cold start at
    notes: list[str] = field(default_factory=list)


Handler = Callable[[nn.Module, Any, Context], tuple[nn.Module, StepRecord]]
C = TypeVar("C", bound=TechniqueConfig)
_HANDLERS: dict[type, Handler] = {}


def register(config_type: type[C]) -> Callable[[Handler], Handler]:
    """Decorator: make `fn` the handler that applies configs of `config_type`."""

    def decorator(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        return fn

    return decorator


def apply_technique(model: nn.Module, config: TechniqueConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Apply one technique config through its registered handler, timing it."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        known = ", ".join(sorted(t.__name__ for t in _HANDLERS))
        raise TypeError(f"no handler registered for {type(config).__name__}; registered configs: {known}")
    started = time.perf_counter()
    model, record = handler(model, config, ctx)
    record.seconds = round(time.perf_counter() - started, 3)
    return model, record
