"""An in-batch contrastive distillation loss for embedding models, on (query, passage) pairs cut from training text.

Matching the teacher's embeddings alone (cosine or MSE) teaches a pruned student where each text lies, but not
what retrieval needs most: that a query lies nearer its own passage than any other. The contrastive term asks for
exactly that over the batch (InfoNCE, the loss sentence-transformers' MultipleNegativesRankingLoss computes), with
the other passages of the batch as negatives; the teacher's embeddings stay the targets for the rest, so the
student does not drift from the space the teacher's index was built in. The pairs are built as the labeled
evaluation set is (a paragraph's first sentence and the rest of it), from training text only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from orchestrator.tasks.text.labeled import cloze_pair


def cloze_pairs(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(queries, passages): each training paragraph with a second sentence, as its first sentence and the rest."""
    pairs = [pair for pair in (cloze_pair(text) for text in texts) if pair is not None]
    return [q for q, _ in pairs], [p for _, p in pairs]


def contrastive_kd_loss(
    student_queries: torch.Tensor,
    student_passages: torch.Tensor,
    teacher_queries: torch.Tensor,
    teacher_passages: torch.Tensor,
    temperature: float = 0.05,
    teacher_weight: float = 1.0,
) -> torch.Tensor:
    """InfoNCE of each query against the batch's passages (its own the positive), plus 1 − cosine to the teacher."""
    if student_queries.shape != student_passages.shape:
        raise ValueError(f"one passage per query: {tuple(student_queries.shape)} vs {tuple(student_passages.shape)}")
    q, p = F.normalize(student_queries, dim=-1), F.normalize(student_passages, dim=-1)
    logits = q @ p.T / temperature
    ranking = F.cross_entropy(logits, torch.arange(len(q), device=q.device))
    student = torch.cat([student_queries, student_passages])
    teacher = torch.cat([teacher_queries, teacher_passages]).to(student.dtype)
    return ranking + teacher_weight * (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()
