"""Labeled retrieval sets: the built-in inverse-cloze set, and BEIR folders with every bad input named."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import InputError
from orchestrator.tasks.text.beir import read_beir
from orchestrator.tasks.text.corpus import paragraphs
from orchestrator.tasks.text.labeled import inverse_cloze_sets

# --- the built-in inverse-cloze set ----------------------------------------------------------


@pytest.fixture(scope="module")
def cloze():
    return inverse_cloze_sets(paragraphs(), n_queries=500, n_passages=2000, seed=0)


def test_each_query_is_a_first_sentence_and_its_passage_the_rest_of_that_paragraph(cloze):
    by_text = {" ".join(p.split()): p for p in paragraphs()}
    for query, labels in zip(cloze.val.queries[:50], cloze.val.qrels[:50]):
        ((index, grade),) = labels.items()
        assert grade == 1 and f"{query} {cloze.val.passages[index]}" in by_text


def test_val_and_test_are_full_size_disjoint_and_disjoint_from_training(cloze):
    for split in (cloze.val, cloze.test):
        assert len(split.queries) == 500 and len(split.passages) == 2000
    held_out = set(cloze.val.texts()) | set(cloze.test.texts())
    assert not set(cloze.val.texts()) & set(cloze.test.texts())
    train = set(cloze.train)
    assert not held_out & train
    # No training paragraph contains a held-out query or passage either (they are cut from held-out paragraphs).
    assert not any(cloze.val.queries[0] in text for text in cloze.train)
    assert len(cloze.train) > 5000, "everything not held out is training text"


def test_the_sets_are_the_same_on_every_run_and_move_with_the_seed(cloze):
    again = inverse_cloze_sets(paragraphs(), n_queries=500, n_passages=2000, seed=0)
    assert again == cloze
    other = inverse_cloze_sets(paragraphs(), n_queries=500, n_passages=2000, seed=1)
    assert other.val.queries != cloze.val.queries


def test_a_corpus_too_small_for_two_splits_is_refused():
    with pytest.raises(ValueError, match="too few"):
        inverse_cloze_sets(paragraphs()[:300], n_queries=100, n_passages=200)


# --- BEIR folders ----------------------------------------------------------------------------


def write_beir(folder, corpus=None, queries=None, dev=None, test=None):
    """A small BEIR folder; each argument replaces that file's lines."""
    corpus = corpus if corpus is not None else [
        {"_id": f"d{i}", "title": f"Title {i}", "text": f"passage number {i}"} for i in range(6)
    ]  # fmt: skip
    queries = queries if queries is not None else [{"_id": f"q{i}", "text": f"question {i}"} for i in range(3)]
    dev = dev if dev is not None else ["q0\td1\t2", "q0\td2\t1", "q1\td3\t1"]
    test = test if test is not None else ["q2\td4\t1", "q1\td5\t0"]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    for name, rows in (("dev", dev), ("test", test)):
        (folder / "qrels" / f"{name}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(r + "\n" for r in rows))
    return folder


def test_a_beir_folder_reads_into_graded_splits_over_the_whole_corpus(tmp_path):
    splits = read_beir(write_beir(tmp_path))
    val, test = splits["val"], splits["test"]
    assert val.queries == ("question 0", "question 1") and val.passages[1] == "Title 1 passage number 1"
    assert val.qrels == ({1: 2, 2: 1}, {3: 1})
    assert len(test.passages) == 6 and test.queries == ("question 2",)  # q1 has only a grade-0 label in test


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        (lambda f: (f / "queries.jsonl").unlink(), "", "missing queries.jsonl"),
        (lambda f: write_beir(f, dev=["q0\td9\t1"]), "dev.tsv:2", "passage 'd9' is not in corpus.jsonl"),
        (lambda f: write_beir(f, test=["q7\td1\t1"]), "test.tsv:2", "query 'q7' is not in queries.jsonl"),
        (lambda f: write_beir(f, dev=["q0\td1\t-1"]), "dev.tsv:2", "must be a non-negative integer"),
        (lambda f: write_beir(f, dev=["q0\td1\t0.5"]), "dev.tsv:2", "must be a non-negative integer"),
        (lambda f: write_beir(f, test=["q1\td5\t0"]), "test.tsv", "no query has a relevant passage"),
        (lambda f: write_beir(f, dev=["q0 d1 1"]), "dev.tsv:2", "separated by tabs"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d0"}\nnot json\n'), "corpus.jsonl:2", "not a JSON object"),
    ],
)
def test_a_bad_beir_folder_names_the_file_and_line(tmp_path, change, where, words):
    folder = write_beir(tmp_path)
    change(folder)
    with pytest.raises(InputError) as raised:
        read_beir(folder)
    assert where in str(raised.value) and words in str(raised.value), str(raised.value)
