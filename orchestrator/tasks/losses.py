"""Distillation losses a task picks from for its outputs: KL + CE for class logits, MSE for float outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """Hinton et al.'s distillation loss; T² keeps the soft term's gradients on the hard term's scale."""
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
    )
    hard = F.cross_entropy(student_logits, targets)
    return alpha * temperature**2 * soft + (1.0 - alpha) * hard


def regression_kd_loss(
    student_out: torch.Tensor, teacher_out: torch.Tensor, targets: torch.Tensor, alpha: float
) -> torch.Tensor:
    """For float targets: alpha·MSE(student, teacher) + (1 − alpha)·MSE(student, targets)."""
    target = targets.reshape(student_out.shape).to(student_out.dtype)
    return alpha * F.mse_loss(student_out, teacher_out) + (1.0 - alpha) * F.mse_loss(student_out, target)
