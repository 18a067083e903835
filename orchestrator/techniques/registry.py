"""Technique configs, the handlers that apply them, and what each handler records: the step of a recipe.

A handler is registered explicitly with its config type: the compression techniques by
`TECHNIQUES.add` (techniques/knobs.py, their `handlers`), the serving runtimes by `REGISTRY.add`
(runtimes/registry.py, each runtime's `handlers`). A config type is handled once: a second
handler for it is refused.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from orchestrator.tasks.base import Task


class Stage(str, enum.Enum):
    """Where a step sits in a recipe's pipeline: pruning, then distillation, then quantization, then the runtime."""

    PRUNE = "prune"
    DISTILL = "distill"
    QUANTIZE = "quantize"
    RUNTIME = "runtime"

    def __str__(self) -> str:
        return self.value


class TechniqueConfig(BaseModel):
    """Base of every technique's config: frozen, no unknown fields.

    `stage` says which stage of the pipeline it is. `keeps_float_weights` says whether the model
    after this stage is still float weights a torch module holds: False for quantization and for a
    runtime taking the model over, so export knows where the float model ends.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    stage: ClassVar[Stage]
    keeps_float_weights: ClassVar[bool] = True


class StepRecord(BaseModel):
    """What one technique did: its stage, its config, what it changed, and any fallbacks taken."""

    stage: Stage
    technique: str
    config: dict[str, Any]
    details: dict[str, Any] = {}
    fallbacks: list[str] = []
    seconds: float = 0.0

    @classmethod
    def of(cls, config: TechniqueConfig, technique: str, **fields: Any) -> "StepRecord":
        """The record of applying `config`: its stage and settings, and what the handler reports."""
        return cls(stage=config.stage, technique=technique, config=config.model_dump(), **fields)


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


class HandlerTable:
    """The one handler of each config type; registering a second one for a type is refused."""

    def __init__(self) -> None:
        self._handlers: dict[type, Handler] = {}

    def add(self, config_type: type, handler: Handler) -> None:
        """Make `handler` the one that applies configs of `config_type`."""
        if config_type in self._handlers:
            raise ValueError(f"{config_type.__name__} already has a handler ({self._handlers[config_type].__name__})")
        self._handlers[config_type] = handler

    def __contains__(self, config_type: object) -> bool:
        return config_type in self._handlers

    def get(self, config_type: type) -> Handler:
        """The handler of a config type; TypeError naming the registered ones where it has none."""
        handler = self._handlers.get(config_type)
        if handler is None:
            known = ", ".join(sorted(t.__name__ for t in self._handlers))
            raise TypeError(f"no handler registered for {config_type.__name__}; registered configs: {known}")
        return handler


HANDLERS = HandlerTable()


def apply_technique(model: nn.Module, config: TechniqueConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Apply one technique config through its registered handler, timing it."""
    handler = HANDLERS.get(type(config))
    started = time.perf_counter()
    model, record = handler(model, config, ctx)
    record.seconds = round(time.perf_counter() - started, 3)
    return model, record
