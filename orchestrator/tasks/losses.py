"""Distillation losses a task picks from for its outputs: KL + CE for class logits, MSE for float outputs.

`DistillLoss` names the losses a recipe may ask for; each task declares the ones it offers
(`Task.distill_losses`), and a search asking a task for another is refused before it starts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
import torch.nn.functional as F


class DistillLoss(str, enum.Enum):
    """The distillation loss a recipe asks for: the task's own (auto), or one an embedding task offers besides."""

    AUTO = "auto"  # the task's default: KL + CE for class ids, MSE for float targets, 1 − cosine for embeddings
    COSINE = "cosine"  # embeddings: 1 − cosine to the teacher's
    MSE = "mse"  # embeddings: squared distance to the teacher's
    CONTRASTIVE = "contrastive"  # embeddings: in-batch InfoNCE on (query, passage) training pairs, plus 1 − cosine

    def __str__(self) -> str:
        return self.value

    @property
    def trains_on_pairs(self) -> bool:
        """Whether its batches are (query, passage) pairs (`Task.pair_batches`) rather than training examples."""
        return self is DistillLoss.CONTRASTIVE


@dataclass(frozen=True)
class LossSettings:
    """What a task's distillation loss reads: the softmax temperature, the weight of the teacher term, the loss."""

    temperature: float = 4.0
    alpha: float = 0.7
    loss: DistillLoss = DistillLoss.AUTO


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
