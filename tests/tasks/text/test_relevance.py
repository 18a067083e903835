"""nDCG@10, recall@10 and MRR@10 on hand-made rankings and labels, and the paired interval of a drop."""

from __future__ import annotations

import math

import pytest
import torch

from orchestrator.tasks.base import paired_drop
from orchestrator.tasks.text.relevance import (
    mrr_per_query,
    ndcg_per_query,
    recall_per_query_labeled,
    relevance_per_query,
)

D = [1 / math.log2(r + 2) for r in range(10)]  # the discount at ranks 1..10


def test_ndcg_with_graded_labels_by_hand():
    ranked = torch.tensor([[5, 2, 7, 0, 1, 3, 4, 6, 8, 9]])
    qrels = [{2: 2, 7: 1, 9: 3}]  # the best passage (grade 3) is ranked last
    dcg = 2 * D[1] + 1 * D[2] + 3 * D[9]
    idcg = 3 * D[0] + 2 * D[1] + 1 * D[2]
    assert ndcg_per_query(ranked, qrels)[0].item() == pytest.approx(dcg / idcg)


def test_a_perfect_ranking_scores_one_and_a_relevant_passage_not_retrieved_scores_zero():
    ranked = torch.tensor([[3, 1, 0, 2, 4, 5, 6, 7, 8, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    qrels = [{3: 2, 1: 1}, {42: 1}]  # query 2's only relevant passage is outside its top 10
    assert ndcg_per_query(ranked, qrels).tolist() == pytest.approx([1.0, 0.0])
    assert recall_per_query_labeled(ranked, qrels).tolist() == [1.0, 0.0]
    assert mrr_per_query(ranked, qrels).tolist() == [1.0, 0.0]


def test_recall_counts_the_share_of_relevant_passages_in_the_top_ten_and_mrr_the_first_rank():
    ranked = torch.tensor([[9, 8, 4, 7, 6, 5, 3, 2, 1, 0]])
    qrels = [{4: 1, 0: 1, 11: 1, 12: 0}]  # grade 0 is judged not relevant
    assert recall_per_query_labeled(ranked, qrels).item() == pytest.approx(2 / 3)
    assert mrr_per_query(ranked, qrels).item() == pytest.approx(1 / 3)


def test_embeddings_are_ranked_by_cosine_and_metric_names_are_checked():
    passages = torch.eye(12)
    queries = torch.stack([passages[3] + 0.1 * passages[5], passages[7]])
    qrels = [{5: 1}, {7: 1}]
    assert relevance_per_query("mrr_at_10", queries, passages, qrels).tolist() == pytest.approx([0.5, 1.0])
    with pytest.raises(ValueError, match="metric must be one of"):
        relevance_per_query("map_at_10", queries, passages, qrels)
    with pytest.raises(ValueError, match="labels for 1"):
        relevance_per_query("ndcg_at_10", queries, passages, qrels[:1])


def test_the_paired_interval_is_narrower_than_the_unpaired_one_on_the_same_queries():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.rand(500, generator=generator, dtype=torch.float64)  # queries differ a lot in difficulty
    candidate = (teacher - 0.01 + 0.02 * torch.rand(500, generator=generator, dtype=torch.float64) - 0.01).clamp(0, 1)
    drop, low, high = paired_drop(teacher, candidate)
    assert drop == pytest.approx(float((teacher - candidate).mean())) and low <= drop <= high
    from orchestrator.tasks.text.agreement import mean_with_interval

    _, t_low, t_high = mean_with_interval(teacher)
    assert high - low < (t_high - t_low) / 5, "pairing removes the spread of query difficulty"
    with pytest.raises(ValueError, match="same queries"):
        paired_drop(teacher, candidate[:10])


def test_the_evaluator_scores_queries_then_passages_and_pairs_the_drop():
    from orchestrator.tasks.text.relevance import RelevanceEvaluator

    passages = torch.eye(12, dtype=torch.float64)
    queries = torch.stack([passages[3], passages[5] + 0.5 * passages[4], passages[7]])
    qrels = [{3: 1}, {5: 1}, {7: 2}]
    evaluator = RelevanceEvaluator(3, qrels, metric="mrr_at_10")
    teacher = torch.cat([queries, passages])
    worse = torch.cat([torch.stack([passages[3], passages[4] + 0.5 * passages[5], passages[7]]), passages])
    assert evaluator.per_query(teacher).tolist() == [1.0, 1.0, 1.0]
    value, low, high = evaluator(worse)
    assert value == pytest.approx((1 + 0.5 + 1) / 3) and low <= value <= high
    drop, low, high = evaluator.drop(teacher, worse)
    assert drop == pytest.approx(0.5 / 3) and low <= drop <= high
    with pytest.raises(ValueError, match="metric must be one of"):
        RelevanceEvaluator(3, qrels, metric="recall_at_5")
