"""The task says which positions are real tokens; distillation's hidden-state matching asks it instead of reading the batch."""

from __future__ import annotations

import torch

from orchestrator.tasks.digits import DigitsTask


def test_token_mask_is_the_attention_mask_of_named_inputs_and_none_for_a_tensor():
    task = DigitsTask.__new__(DigitsTask)  # token_mask reads only the batch
    mask = torch.tensor([[1, 1, 0]])
    assert task.token_mask({"input_ids": torch.tensor([[5, 6, 0]]), "attention_mask": mask}) is mask
    assert task.token_mask({"input_ids": torch.tensor([[5, 6, 0]])}) is None
    assert task.token_mask(torch.zeros(2, 1, 8, 8)) is None
