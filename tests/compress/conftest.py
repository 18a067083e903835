"""Fixtures for the compression tests: a CPU context around the cached digits teacher."""

from __future__ import annotations

import copy

import pytest
import torch

from orchestrator.compress import Context, apply_technique


@pytest.fixture
def cpu_ctx(digits_task, teacher) -> Context:
    """A fresh CPU context (so notes and callbacks never leak between tests)."""
    return Context(task=digits_task, teacher=teacher, device=torch.device("cpu"))


@pytest.fixture
def compress(cpu_ctx):
    """Apply one technique config to a copy of a model (the teacher by default)."""

    def run(config, model=None, ctx=None):
        return apply_technique(copy.deepcopy(model if model is not None else cpu_ctx.teacher), config, ctx or cpu_ctx)

    return run
