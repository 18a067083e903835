"""The Task contract: every implementation, built-in or a user's by import path, passes the same checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from orchestrator.tasks import Quality, Task, load_task
from orchestrator.tasks.batches import batch_size, run, tensors
from tests.conftest import MINILM_CI
from tests.llm_models import tiny_llm_folder, write_text
from tests.tasks.text.tiny_bert import FAMILIES, save_fine_tuned_classifier, save_tiny_bert, save_tiny_encoder, topic_rows

IMPLEMENTATIONS = {
    "digits": ("digits", {}),
    "user-import-path": ("tests.tasks.user_task:make_task", {"n_features": 12, "n_classes": 3, "per_class": 50}),
    "regression-float-targets": ("tests.tasks.regression_task:make_task", {}),
    "named-inputs": ("tests.tasks.named_inputs_task:make_task", {}),
    "minilm": ("minilm", MINILM_CI),
    "example-hf-encoder": ("examples.hf_encoder_task:make_task", {**MINILM_CI, "seq_len": 48}),
    # Every encoder family transformer pruning knows, as a user's folder (BERT-named is the one above); randomly
    # initialised, so judged by fidelity to themselves: their retrieval on labels is chance's.
    "example-hf-encoder-distilbert": ("examples.hf_encoder_task:make_task", {**MINILM_CI, "seq_len": 48, "metric": "fidelity"}),
    "example-hf-encoder-modernbert": ("examples.hf_encoder_task:make_task", {**MINILM_CI, "seq_len": 48, "metric": "fidelity"}),
    "example-hf-encoder-deberta": ("examples.hf_encoder_task:make_task", {**MINILM_CI, "seq_len": 48, "metric": "fidelity"}),
    "example-hf-classifier": ("examples.hf_classifier_task:make_task", {"seq_len": 64}),
    # A decoder LLM: a tiny random Llama with a tokenizer trained in the test, judged by perplexity on its own text.
    "example-hf-causal-lm": (
        "examples.hf_causal_lm_task:make_task",
        {"window_tokens": 32, "train_window_tokens": 16, "n_val": 4, "n_test": 5, "n_train": 10, "top_k": 8},
    ),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS), scope="module")
def task(request, tmp_path_factory) -> Task:
    spec, kwargs = IMPLEMENTATIONS[request.param]
    if spec == "digits":
        return request.getfixturevalue("digits_task")  # the session's task: its teacher is already loaded
    if spec == "minilm":
        return request.getfixturevalue("minilm_task")
    if spec == "examples.hf_classifier_task:make_task":
        rows = topic_rows()
        folder = tmp_path_factory.mktemp("classifier")
        data = folder / "labeled.jsonl"
        data.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in rows))
        kwargs = {**kwargs, "model_path": str(save_fine_tuned_classifier(folder, rows)), "data_file": str(data)}
    elif spec == "examples.hf_causal_lm_task:make_task":
        root = tmp_path_factory.mktemp("causal-lm")
        kwargs = {**kwargs, "model_path": str(tiny_llm_folder(root / "model")), "text_file": str(write_text(root / "text.txt", 3))}
    elif request.param.endswith(FAMILIES[1:]):
        family = request.param.rpartition("-")[2]
        kwargs = {**kwargs, "model_path": str(save_tiny_encoder(tmp_path_factory.mktemp(family), family))}
    elif spec.startswith("examples."):
        kwargs = {**kwargs, "model_path": str(save_tiny_bert(tmp_path_factory.mktemp("encoder")))}
    return load_task(spec, kwargs)


def rows(inputs) -> set[bytes]:
    """Each example's bytes across all its tensors (one tensor, or named ones)."""
    flat = torch.cat([t.reshape(len(t), -1).float() for t in tensors(inputs)], dim=1)
    return {row.numpy().tobytes() for row in flat}


def shapes(inputs) -> list[tuple[int, ...]]:
    """Each tensor's shape without the batch dimension."""
    return [tuple(t.shape[1:]) for t in tensors(inputs)]


def test_teacher_is_an_eval_mode_module_on_cpu_and_is_stable(task):
    model = task.teacher()
    assert isinstance(model, nn.Module) and not model.training
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    assert task.teacher() is model


def test_splits_are_disjoint_and_aligned(task):
    splits = {s: task.data(s) for s in ("train", "val", "test")}
    for inputs, targets in splits.values():
        assert batch_size(inputs) == len(targets) > 0
        assert {t.device.type for t in tensors(inputs)} == {targets.device.type} == {"cpu"}
    val, test, train = rows(splits["val"][0]), rows(splits["test"][0]), rows(splits["train"][0])
    assert not val & test, "val and test overlap"
    assert not (val | test) & train, "an evaluation example is also a training example"
    assert shapes(splits["val"][0]) == shapes(splits["test"][0])
    if not getattr(task, "generates", False):  # an LLM's distillation windows are cut shorter than the judged ones
        assert shapes(splits["val"][0]) == shapes(splits["train"][0])


@pytest.mark.parametrize("split", ["val", "test"])
def test_evaluate_returns_quality_with_an_interval_bracketing_the_value(task, split):
    quality, items, _ = task.evaluate_items(task.teacher(), split)
    assert quality == task.evaluate(task.teacher(), split)
    assert set(quality) == set(Quality.__annotations__)
    assert quality["split"] == split and quality["metric"] == task.metric
    assert quality["higher_is_better"] is task.higher_is_better
    # The items the metric averages: examples, or a text task's queries (per_item_scores) rather than its passages.
    assert quality["n_examples"] == (len(task.data(split)[1]) if items is None else len(items))
    assert quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]
    if quality["value"] < 1.0:  # a teacher judged by agreement with itself scores exactly 1 on every item
        assert quality["ci95_low"] < quality["ci95_high"]
    if task.metric in ("accuracy", "r2"):
        assert quality["ci95_high"] <= 1.0
    if task.metric == "log_perplexity":  # nats per token: uniform guessing over the vocabulary scores ln(V)
        assert 0 < quality["value"] < math.log(task.teacher().config.vocab_size) + 0.5
        return
    if task.metric == "ndcg_at_10":  # labeled retrieval: one relevant passage among P, ranked at random, scores this
        passages = len(task.data(split)[1]) - len(items)
        chance = sum(1 / math.log2(rank + 2) for rank in range(10)) / passages
        assert quality["value"] > 2 * chance, "even a random encoder beats random ranking by far"
        return
    assert quality["value"] > 0.9, "a teacher worth compressing beats chance by far"


def test_evaluate_judges_a_bad_model_as_bad(task):
    inputs, _ = task.data("val")
    if getattr(task, "generates", False):  # a model that predicts every token equally likely: perplexity = vocabulary
        vocab = task.teacher().config.vocab_size

        class Uniform(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.unused = nn.Parameter(torch.zeros(1))

            def forward(self, ids):
                return torch.zeros(*ids.shape, vocab)

        quality = task.evaluate(Uniform(), "val")
        assert quality["value"] == pytest.approx(math.log(vocab), rel=1e-5)
        assert quality["value"] > task.evaluate(task.teacher(), "val")["value"]
        return
    n_outputs = run(task.teacher(), inputs).shape[1]

    class Constant(nn.Module):
        def forward(self, x=None, **named):
            return torch.zeros(batch_size(x if x is not None else named), n_outputs)

    quality = task.evaluate(Constant(), "val")
    assert quality["value"] < 0.6 and quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]


def test_judging_a_split_runs_at_most_predict_batch_size_examples_at_once_in_order(task):
    inputs, _ = task.data("val")
    teacher, seen = task.teacher(), []

    class Noting(nn.Module):
        """The teacher, noting how many examples each call runs."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = teacher

        def forward(self, x=None, **named):
            seen.append(batch_size(x if x is not None else named))
            return run(self.inner, x if x is not None else named)

    task.evaluate(Noting().eval(), "val")  # eval: evaluate restores the mode it found, on the shared teacher too
    assert max(seen) <= task.predict_batch_size and sum(seen) == batch_size(inputs)
    seen.clear()
    with torch.inference_mode():
        in_sevens, at_once = task.predict(Noting().eval(), inputs, batch_size=7), run(teacher, inputs).float()
    assert max(seen) <= 7 and sum(seen) == batch_size(inputs)
    # Each example's outputs as in one batch, in the split's order; a text task's chunks drop padding, which the
    # attention mask hid: the same outputs up to float rounding.
    assert in_sevens.shape == at_once.shape and torch.allclose(in_sevens, at_once, atol=1e-5)


@pytest.mark.parametrize("batch_size", [1, 7, 400])  # 400: more than any CI split holds (digits val: 359), so examples repeat
def test_example_batch_has_the_input_shape(task, batch_size):
    batch = task.example_batch(batch_size)
    assert [(len(t), *t.shape[1:]) for t in tensors(batch)] == [(batch_size, *s) for s in shapes(task.data("val")[0])]
    assert run(task.teacher(), batch).shape[0] == batch_size


def test_train_batches_are_reproducible_by_seed(task):
    def take(seed, n=3):
        batches = task.train_batches(16, seed=seed)
        return [next(batches) for _ in range(n)]

    first, again, other = take(0), take(0), take(1)
    for (x1, y1), (x2, y2) in zip(first, again):
        assert rows(x1) == rows(x2) and torch.equal(y1, y2)
    assert any(rows(a[0]) != rows(b[0]) for a, b in zip(first, other))
    assert all(batch_size(x) == len(y) == 16 for x, y in first)
    assert set().union(*(rows(x) for x, _ in first)) <= rows(task.data("train")[0])


def test_calibration_batches_come_from_training_data(task):
    batches = task.calibration_batches(n_batches=2, batch_size=8)
    assert len(batches) == 2 and all(batch_size(b) == 8 for b in batches)
    assert set().union(*(rows(b) for b in batches)) <= rows(task.data("train")[0])
