"""Retrieval quality on relevance labels: nDCG@k, recall@k and MRR@k per query, as BEIR and MTEB report them.

Labels are graded (0 = not relevant): `qrels[q]` maps a passage's index to its grade for query q. nDCG uses
the grade as the gain (trec_eval's and so BEIR's convention) over the ideal ordering of every judged passage;
recall@k is the share of a query's relevant passages in its top k; MRR@k is 1 / the rank of the first relevant
passage in the top k (0 if none). Each is a mean over queries, with a seeded bootstrap interval; the drop of a
candidate against the teacher gets a *paired* interval, a bootstrap over the per-query differences measured on
the same queries, far narrower than two unpaired intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from orchestrator.tasks.base import paired_drop
from orchestrator.tasks.text.agreement import mean_with_interval, top_k

Qrels = Sequence[Mapping[int, int]]
RELEVANCE_METRICS = ("ndcg_at_10", "recall_at_10", "mrr_at_10")


def ndcg_per_query(ranked: torch.Tensor, qrels: Qrels, k: int = 10) -> torch.Tensor:
    """nDCG@k of each query's ranking (passage indices, best first) against its graded labels."""
    discounts = [1.0 / math.log2(rank + 2) for rank in range(k)]
    out = []
    for row, labels in zip(ranked.tolist(), qrels):
        dcg = sum(labels.get(p, 0) * d for p, d in zip(row[:k], discounts))
        ideal = sorted((g for g in labels.values() if g > 0), reverse=True)[:k]
        idcg = sum(g * d for g, d in zip(ideal, discounts))
        out.append(dcg / idcg if idcg > 0 else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def recall_per_query_labeled(ranked: torch.Tensor, qrels: Qrels, k: int = 10) -> torch.Tensor:
    """Share of each query's relevant passages (grade > 0) found in its top k."""
    out = []
    for row, labels in zip(ranked.tolist(), qrels):
        relevant = {p for p, g in labels.items() if g > 0}
        out.append(len(relevant & set(row[:k])) / len(relevant) if relevant else 0.0)
    return torch.tensor(out, dtype=torch.float64)


def mrr_per_query(ranked: torch.Tensor, qrels: Qrels, k: int = 10) -> torch.Tensor:
    """1 / rank of each query's first relevant passage within its top k; 0 where none is there."""
    out = []
    for row, labels in zip(ranked.tolist(), qrels):
        first = next((rank for rank, p in enumerate(row[:k]) if labels.get(p, 0) > 0), None)
        out.append(0.0 if first is None else 1.0 / (first + 1))
    return torch.tensor(out, dtype=torch.float64)


_PER_QUERY = {"ndcg": ndcg_per_query, "recall": recall_per_query_labeled, "mrr": mrr_per_query}


def relevance_per_query(metric: str, queries: torch.Tensor, passages: torch.Tensor, qrels: Qrels) -> torch.Tensor:
    """Per-query scores of `metric` (e.g. 'ndcg_at_10') for query and passage embeddings ranked by cosine."""
    name, _, k = metric.rpartition("_at_")
    if name not in _PER_QUERY or not k.isdigit():
        raise ValueError(f"metric must be one of {sorted(f'{n}_at_K' for n in _PER_QUERY)}, got {metric!r}")
    if len(qrels) != len(queries):
        raise ValueError(f"{len(queries)} queries but labels for {len(qrels)}")
    ranked = top_k(queries, passages, min(int(k), len(passages)))
    return _PER_QUERY[name](ranked, qrels, int(k))


class RelevanceEvaluator:
    """Retrieval quality of any model's embeddings on one labeled split: the metric, its interval, the paired drop.

    Takes the embeddings of the split's texts (queries then passages, `LabeledSplit.texts()` order), as
    Sentence-Transformers' InformationRetrievalEvaluator takes a model, so every text task judges alike.
    """

    def __init__(self, queries: int, qrels: Qrels, metric: str = "ndcg_at_10", seed: int = 0) -> None:
        if metric not in RELEVANCE_METRICS:
            raise ValueError(f"metric must be one of {list(RELEVANCE_METRICS)}, got {metric!r}")
        self.queries, self.qrels, self.metric, self.seed = queries, list(qrels), metric, seed

    def per_query(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The metric of each query, from the embeddings of the split's queries then passages."""
        return relevance_per_query(self.metric, embeddings[: self.queries], embeddings[self.queries :], self.qrels)

    def __call__(self, embeddings: torch.Tensor) -> tuple[float, float, float]:
        """(value, ci95_low, ci95_high): the mean over queries, with a seeded bootstrap over queries."""
        return mean_with_interval(self.per_query(embeddings), seed=self.seed)

    def drop(self, teacher: torch.Tensor, candidate: torch.Tensor) -> tuple[float, float, float]:
        """Teacher minus candidate on the same queries, with the paired bootstrap interval."""
        return paired_drop(self.per_query(teacher), self.per_query(candidate), seed=self.seed)
