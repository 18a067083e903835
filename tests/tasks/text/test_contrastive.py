"""The in-batch contrastive distillation loss and the training pairs it learns from."""

from __future__ import annotations

import pytest
import torch

from orchestrator.tasks.text.contrastive import cloze_pairs, contrastive_kd_loss


def test_pairs_are_first_sentences_and_the_rest_and_paragraphs_of_one_sentence_are_left_out():
    queries, passages = cloze_pairs([
        "Open a file for reading. The with statement closes it again when the block ends.",
        "A single sentence without any second part to it",
    ])  # fmt: skip
    assert queries == ["Open a file for reading."]
    assert passages == ["The with statement closes it again when the block ends."]


def test_the_loss_is_lower_when_each_query_is_nearest_its_own_passage():
    generator = torch.Generator().manual_seed(0)
    passages = torch.randn(8, 16, generator=generator)
    matched = passages + 0.1 * torch.randn(8, 16, generator=generator)
    shuffled = matched[torch.roll(torch.arange(8), 1)]
    good = contrastive_kd_loss(matched, passages, matched, passages)
    bad = contrastive_kd_loss(shuffled, passages, matched, passages)
    assert good < bad


def test_training_on_it_pulls_queries_to_their_passages_and_lowers_the_loss():
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(32, 8, generator=generator)
    passages = queries + 0.3 * torch.randn(32, 8, generator=generator)  # the teacher (identity) ranks them well
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))

    def ranked_first() -> float:
        with torch.no_grad():
            q, p = (torch.nn.functional.normalize(student(x), dim=-1) for x in (queries, passages))
        return float(((q @ p.T).argmax(1) == torch.arange(32)).float().mean())

    before = ranked_first()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        optimizer.zero_grad()
        loss = contrastive_kd_loss(student(queries), student(passages), queries, passages, teacher_weight=0.1)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2
    assert ranked_first() > before and ranked_first() >= 0.9


def test_one_passage_per_query_is_required():
    with pytest.raises(ValueError, match="one passage per query"):
        contrastive_kd_loss(torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2, 4))


@pytest.mark.slow
def test_contrastive_distillation_of_a_pruned_minilm_lowers_its_loss_and_raises_its_ndcg(minilm_task):
    from orchestrator.compress import Recipe, apply_recipe

    inputs, targets = next(minilm_task.pair_batches(8, seed=0))
    assert inputs["input_ids"].shape[0] == len(targets) == 16  # 8 queries, then their 8 passages
    queries, _ = cloze_pairs(minilm_task.train_texts)  # pairs are cut from training text only, never val or test
    held_out = set(minilm_task.texts("val")) | set(minilm_task.texts("test"))
    assert queries and not held_out & set(minilm_task.train_texts)

    def ndcg(model) -> float:  # val and test together: 32 queries at the CI size, so one query moves it ~3 points
        return sum(minilm_task.evaluate(model, split)["value"] for split in ("val", "test")) / 2

    before = ndcg(apply_recipe(minilm_task, Recipe(keep_layers=2)).model)
    recipe = Recipe(keep_layers=2, kd_steps=60, kd_batch_size=8, kd_learning_rate=3e-4, kd_loss="contrastive")
    distilled = apply_recipe(minilm_task, recipe)
    details = next(s.details for s in distilled.record.steps if s.stage == "distill")
    assert details["final_loss"] < details["first_loss"]
    # Measured 0.62 -> 0.68 (the same on torch's AVX-512 and AVX2 paths): three queries' worth of margin.
    assert ndcg(distilled.model) > before + 0.02
