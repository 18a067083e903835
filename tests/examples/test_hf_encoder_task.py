"""examples/hf_encoder_task.py: a user's own Hugging Face encoder folder, loaded offline, judged, compressed."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import torch

from orchestrator.compress import Recipe, apply_recipe
from orchestrator.errors import InputError
from orchestrator.tasks.batches import run
from orchestrator.tasks.registry import load_task
from orchestrator.tasks.text.corpus import paragraphs
from tests.tasks.text.tiny_bert import FFN, HIDDEN, LAYERS, MAX_POSITIONS, save_tiny_bert

FACTORY = "examples.hf_encoder_task:make_task"
SIZES = dict(n_train=64, n_val_passages=40, n_val_queries=8, n_test_passages=40, n_test_queries=8, seq_len=32)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT and its WordPiece tokenizer, written by save_pretrained as a user's folder would be."""
    pytest.importorskip("transformers")
    return save_tiny_bert(tmp_path_factory.mktemp("encoder"))


@pytest.fixture(scope="module")
def tickets() -> list[str]:
    """Two hundred distinct two-sentence support tickets (the first sentence is an inverse-cloze query)."""
    products, problems = ["billing page", "mobile app", "export job", "login form"], ["times out", "shows an error", "is slow", "crashes"]
    return [
        f"ticket {i}: the {products[i % 4]} {problems[(i // 4) % 4]} since update {i % 7}. "
        f"Customer {i * 37 % 1000} reported it on day {i % 11} of the month."
        for i in range(200)
    ]


@pytest.fixture
def texts_file(tmp_path: Path, tickets: list[str]) -> Path:
    """The tickets one per line, with blank and padded lines a real export has."""
    path = tmp_path / "tickets.txt"
    path.write_text("\n\n".join(f"  {t}  " for t in tickets) + "\n\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No network (every internet connection refused and recorded) and a private task cache."""
    monkeypatch.setenv("HEDGEROW_CACHE_DIR", str(tmp_path / "cache"))
    # The hub reads these at import; the refused sockets below are what prove nothing is fetched.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def refuse(real):
        def connect(self: socket.socket, address: object):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(address)
                raise OSError(f"network disabled in this test: connection to {address} refused")
            return real(self, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", refuse(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse(real_connect_ex))
    yield
    assert not attempts, f"tried to reach the network: {attempts}"


def make(model_folder: Path, **args):
    """The task as a config builds it, through the registry (so errors are what users see)."""
    return load_task(FACTORY, {"model_path": str(model_folder), **SIZES, **args})


def n_weights(model: torch.nn.Module) -> int:
    """Parameters, counting a quantized Linear's packed weight too (it is not an nn.Parameter)."""
    total = 0
    for module in model.modules():
        total += sum(p.numel() for p in module.parameters(recurse=False))
        weight = getattr(module, "weight", None)
        if callable(weight):
            total += weight().numel()
    return total


# --- loading and judging ---------------------------------------------------------------------------------------


def test_loads_offline_on_python_docs_and_the_teacher_is_measured_on_labels(model_folder):
    task = make(model_folder)
    assert task.name == "hf-encoder" and task.cache_path().name.startswith("hf-encoder-")
    inputs, targets = task.data("val")
    corpus = set(paragraphs())
    assert set(task.train_texts) <= corpus, "no texts_file: Python's docs"
    embeddings = run(task.teacher(), inputs)
    n = len(task.texts("val"))
    assert embeddings.shape == targets.shape == (n, HIDDEN) == (SIZES["n_val_queries"] + SIZES["n_val_passages"], 32)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(n), atol=1e-5)
    assert inputs["input_ids"].shape == (n, SIZES["seq_len"])

    ndcg = task.evaluate(task.teacher(), "val")
    assert ndcg["metric"] == "ndcg_at_10" and 0.0 <= ndcg["value"] <= 1.0 and ndcg["n_examples"] == SIZES["n_val_queries"]
    for metric in ("agreement_at_10", "fidelity"):  # the diagnostics: the teacher agrees with itself
        other = make(model_folder, metric=metric)
        quality = other.evaluate(other.teacher(), "val")
        assert quality["metric"] == metric and quality["value"] == pytest.approx(1.0)
        assert quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]


def test_the_users_texts_file_is_the_corpus(model_folder, texts_file, tickets):
    task = make(model_folder, texts_file=str(texts_file))
    queries = [q for split in ("val", "test") for q in task.labeled[split].queries]
    assert len(queries) == SIZES["n_val_queries"] + SIZES["n_test_queries"]
    assert all(any(t.startswith(q) for t in tickets) for q in queries), "each query is a ticket's first sentence"
    assert set(task.train_texts) <= set(tickets), "every training text is a stripped, non-blank line of the file"
    assert len(task.data("train")[1]) == SIZES["n_train"]


# --- bad input ---------------------------------------------------------------------------------------------------


def test_a_folder_without_a_tokenizer_is_refused_naming_it(model_folder, tmp_path, texts_file):
    bare = tmp_path / "no-tokenizer"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_folder / name, bare / name)
    with pytest.raises(InputError) as caught:
        make(bare, texts_file=str(texts_file))
    message = str(caught.value)
    assert str(bare) in message and "tokenizer" in message and "model_path" in message


def test_seq_len_beyond_the_models_positions_is_refused(model_folder, texts_file):
    with pytest.raises(InputError, match=rf"seq_len: {MAX_POSITIONS + 1} tokens.*maximum of {MAX_POSITIONS}"):
        make(model_folder, texts_file=str(texts_file), seq_len=MAX_POSITIONS + 1)


def test_an_unknown_metric_is_refused_naming_the_field(model_folder, texts_file):
    with pytest.raises(InputError, match=r"task\.args\.metric: .*ndcg_at_10, recall_at_10.*fidelity.*'ndcg'"):
        make(model_folder, texts_file=str(texts_file), metric="ndcg")


def test_a_missing_texts_file_is_refused_naming_the_field(model_folder, tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match=r"task\.args\.texts_file: .*nope\.txt"):
        make(model_folder, texts_file=str(missing))


def test_a_texts_file_that_is_not_utf8_is_refused_naming_the_field(model_folder, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"task\.args\.texts_file: .*not UTF-8"):
        make(model_folder, texts_file=str(latin1))


def test_too_few_texts_says_how_many_are_needed(model_folder, tmp_path, tickets):
    short = tmp_path / "short.txt"
    short.write_text("\n".join(tickets[:10]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"the corpus has 10 distinct paragraphs, 10 of two sentences or more: too few"):
        make(model_folder, texts_file=str(short))


# --- compression -------------------------------------------------------------------------------------------------


def test_one_recipe_runs_through_the_real_pipeline(model_folder):
    task = make(model_folder)
    teacher = task.teacher()
    recipe = Recipe(keep_layers=1, prune_ffn_ratio=0.5, bits=8, kd_steps=3, kd_batch_size=8, kd_learning_rate=1e-4)
    compressed = apply_recipe(task, recipe)
    model = compressed.model

    layers = model.encoder.encoder.layer
    assert len(layers) == 1 and layers[0].intermediate.dense.out_features == FFN // 2
    assert [s.stage for s in compressed.record.steps] == ["prune", "prune", "distill", "quantize"]
    assert n_weights(model) < n_weights(teacher)
    inputs, _ = task.data("val")
    assert run(model, inputs).shape == (len(task.texts("val")), HIDDEN)
    assert len(list(teacher.encoder.encoder.layer)) == LAYERS, "the teacher is never modified"

    quality = task.evaluate(model, "val")
    assert 0.0 <= quality["value"] <= 1.0
    assert quality["ci95_low"] <= quality["value"] <= quality["ci95_high"]
