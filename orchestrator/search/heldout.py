"""The held-out check: rebuild a candidate from its recipe and evaluate it once on the test split."""

from __future__ import annotations

from typing import Any

import torch

from orchestrator.compress.recipe import Recipe, apply_recipe
from orchestrator.tasks.base import Quality, Task


def test_quality(task: Task, recipe_json: dict[str, Any], device: str, threads: int) -> Quality:
    """Rebuild the candidate exactly (seeded recipe) and evaluate it on `test`: done once, at the end."""
    torch.set_num_threads(threads)
    recipe = Recipe.model_validate(recipe_json)
    compressed = apply_recipe(task, recipe, device=device, teacher=task.teacher())
    return task.evaluate(compressed.model, "test")
