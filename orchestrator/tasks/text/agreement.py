"""How close a candidate's embeddings stay to the teacher's: fidelity and retrieval agreement (recall@k).

Both are means of per-item scores (per text for fidelity, per query for recall), so
their 95% interval is a seeded percentile bootstrap over those items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from orchestrator.tasks.metrics import bootstrap_interval


def cosine_per_text(candidate: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between each text's candidate and teacher embedding."""
    return F.cosine_similarity(candidate.double(), teacher.double(), dim=-1)


def top_k(queries: torch.Tensor, passages: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each query's k nearest passages by cosine similarity, nearest first."""
    if k > len(passages):
        raise ValueError(f"recall@{k} needs at least {k} passages, got {len(passages)}")
    scores = F.normalize(queries.double(), dim=-1) @ F.normalize(passages.double(), dim=-1).T
    return scores.topk(k, dim=1).indices


def recall_per_query(
    candidate_queries: torch.Tensor,
    candidate_passages: torch.Tensor,
    teacher_queries: torch.Tensor,
    teacher_passages: torch.Tensor,
    k: int = 10,
) -> torch.Tensor:
    """For each query: the share of the teacher's k nearest passages that the candidate also ranks in its k nearest."""
    ours = top_k(candidate_queries, candidate_passages, k)
    theirs = top_k(teacher_queries, teacher_passages, k)
    hits = (ours.unsqueeze(2) == theirs.unsqueeze(1)).any(dim=2).sum(dim=1)
    return hits.double() / k


def mean_with_interval(values: torch.Tensor, seed: int = 0) -> tuple[float, float, float]:
    """The mean of per-item scores and its seeded 95% bootstrap interval."""
    values = values.double().reshape(-1)
    mean = lambda v, _: float(v.mean())  # noqa: E731
    low, high = bootstrap_interval(mean, values, values, seed=seed)
    return float(values.mean()), low, high
