"""Distillation of a pruned encoder: embeddings frozen, and optionally each kept layer matched to its teacher layer."""

from __future__ import annotations

import pytest
import torch

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.compress.hidden_states import HiddenStateMatch, captured
from orchestrator.compress.transformer_prune import encoder_layers
from orchestrator.tasks.registry import load_task
from tests.tasks.text.tiny_bert import save_tiny_bert

SIZES = dict(n_train=64, n_val_passages=40, n_val_queries=8, n_test_passages=40, n_test_queries=8, seq_len=32)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    pytest.importorskip("transformers")
    folder = save_tiny_bert(tmp_path_factory.mktemp("encoder"))
    return load_task("examples.hf_encoder_task:make_task", {"model_path": str(folder), **SIZES})


def test_kept_layers_pair_with_the_teacher_layers_they_came_from(task):
    from orchestrator.techniques import Context, apply_technique
    from orchestrator.compress.transformer_prune import LayerDropConfig

    teacher = task.teacher()
    student, _ = apply_technique(
        __import__("copy").deepcopy(teacher), LayerDropConfig(keep_layers=1), Context(task=task, teacher=teacher, device=torch.device("cpu"))
    )
    match = HiddenStateMatch(student, teacher)
    assert match.teacher_layers == [encoder_layers(teacher)[-1]]
    inputs, _ = task.data("val")
    batch = {k: v[:4] for k, v in inputs.items()}
    with captured(match.student_layers) as ours, captured(match.teacher_layers) as theirs:
        student(**batch), teacher(**batch)
    # The kept layer is the teacher's last, with the same weights, but it now reads the embeddings directly.
    assert ours[0].shape == theirs[0].shape == (4, 32, 32)
    assert match.loss(ours, theirs, batch["attention_mask"]) > 0
    assert match.loss(theirs, theirs, batch["attention_mask"]) == 0


def test_hidden_state_distillation_trains_the_layers_and_leaves_the_embeddings(task):
    recipe = Recipe(keep_layers=1, prune_ffn_ratio=0.5, kd_steps=15, kd_batch_size=16, kd_learning_rate=1e-3, kd_hidden_weight=1.0)
    compressed = apply_recipe(task, recipe)
    kd = next(s for s in compressed.record.steps if s.stage == "distill")
    assert kd.details["hidden_state_layers"] == 1 and kd.details["final_loss"] < kd.details["first_loss"]
    teacher_table = task.teacher().encoder.embeddings.word_embeddings.weight
    student_table = compressed.model.encoder.embeddings.word_embeddings.weight
    assert kd.details["frozen_embedding_params"] >= teacher_table.numel()
    assert torch.equal(student_table, teacher_table)
    untrained = apply_recipe(task, Recipe(keep_layers=1, prune_ffn_ratio=0.5)).model
    trained_layer, pruned_layer = encoder_layers(compressed.model)[0], encoder_layers(untrained)[0]
    assert trained_layer.output.dense.weight.shape == pruned_layer.output.dense.weight.shape == (32, 32)
    assert not torch.equal(trained_layer.output.dense.weight, pruned_layer.output.dense.weight)
