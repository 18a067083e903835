"""recall@k and the bootstrap interval on cases small enough to work out by hand."""

from __future__ import annotations

import pytest
import torch

from orchestrator.tasks.text.agreement import cosine_per_text, mean_with_interval, recall_per_query, top_k


def unit(*rows):
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


def test_top_k_orders_passages_by_cosine():
    queries = unit([1.0, 0.0])
    passages = unit([0.0, 1.0], [1.0, 0.1], [1.0, 1.0], [-1.0, 0.0])
    assert top_k(queries, passages, 3).tolist() == [[1, 2, 0]]
    with pytest.raises(ValueError, match="at least 5 passages"):
        top_k(queries, passages, 5)


def test_recall_counts_the_teachers_neighbours_the_candidate_also_finds():
    passages = unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0])
    teacher_queries = unit([1, 0.2, 0], [0, 0, 1])
    # Query 0: teacher's top-2 is {0, 3}; the candidate's query leans to passage 1, so its top-2 is {3, 1}: 1 of 2.
    # Query 1: identical for both: 2 of 2.
    candidate_queries = unit([0.2, 1, 0], [0, 0, 1])
    per_query = recall_per_query(candidate_queries, passages, teacher_queries, passages, k=2)
    assert per_query.tolist() == [0.5, 1.0]


def test_recall_of_the_teacher_against_itself_is_one():
    generator = torch.Generator().manual_seed(0)
    queries, passages = torch.randn(20, 8, generator=generator), torch.randn(50, 8, generator=generator)
    assert recall_per_query(queries, passages, queries, passages, k=10).eq(1.0).all()


def test_cosine_per_text():
    assert cosine_per_text(unit([1, 0], [0, 1]), unit([1, 0], [1, 0])).tolist() == pytest.approx([1.0, 0.0])


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = torch.tensor([0.0, 1.0] * 50, dtype=torch.float64)
    mean, low, high = mean_with_interval(values)
    assert mean == 0.5 and low < 0.5 < high
    # A proportion of 100 with p = 0.5: the normal approximation's half-width is 1.96 * 0.05 = 0.098.
    assert high - low == pytest.approx(0.196, abs=0.04)
    assert mean_with_interval(values) == (mean, low, high)
    assert mean_with_interval(torch.ones(10)) == (1.0, 1.0, 1.0)
