"""The held-out check: rebuild a candidate from its recipe and evaluate it once on the test split."""

from __future__ import annotations

from typing import Any

import torch

from orchestrator.compress.recipe import Recipe, apply_recipe
from orchestrator.tasks.base import Task


def test_quality(task: Task, recipe_json: dict[str, Any], device: str, threads: int) -> dict[str, Any]:
    """Rebuild the candidate exactly (seeded recipe) and evaluate it on `test`: done once, at the end.

    The Quality's fields, plus `items` (per-item scores for the paired drop, or None) and `diagnostics`.
    """
    from orchestrator.search.trial import evaluate_items

    torch.set_num_threads(threads)
    recipe = Recipe.model_validate(recipe_json)
    compressed = apply_recipe(task, recipe, device=device, teacher=task.teacher())
    evaluation = evaluate_items(task, compressed.model, "test")
    items = None if evaluation.items is None else evaluation.items.tolist()
    return {**evaluation.quality, "items": items, "diagnostics": evaluation.diagnostics}
