"""The documentation corpus: its prose filter, determinism and imports; first sentences; the disjoint seeded splits."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from orchestrator.tasks.text import corpus as corpus_module
from orchestrator.tasks.text.corpus import CorpusSplits, corpus_fingerprint, first_sentence, paragraphs, split_corpus

SPLIT_SIZES = dict(n_train=10, n_val_passages=5, n_val_queries=4, n_test_passages=6, n_test_queries=3)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return paragraphs()


def _toy_corpus(n: int = 60) -> list[str]:
    return [f"Paragraph number {i} says something useful. It also has a second sentence, {i}." for i in range(n)]


def _all_texts(splits: CorpusSplits) -> list[str]:
    return [text for field in dataclasses.fields(splits) for text in getattr(splits, field.name)]


# --- paragraphs() -----------------------------------------------------------------------------------------------


def test_the_corpus_has_a_plausible_number_of_distinct_sorted_paragraphs(corpus):
    assert 5_000 <= len(corpus) <= 20_000, len(corpus)
    assert len(set(corpus)) == len(corpus)
    assert corpus == sorted(corpus)


def test_every_paragraph_is_normalized_prose(corpus):
    for text in corpus:
        assert corpus_module.MIN_WORDS <= len(text.split()) <= corpus_module.MAX_WORDS, text
        assert text == " ".join(text.split()), "whitespace collapsed to single spaces"
        assert ">>>" not in text
        letters = sum(char.isalpha() or char == " " for char in text)
        assert letters >= corpus_module.MIN_ALPHA_FRACTION * len(text), text


def test_paragraphs_are_the_same_on_every_call_and_callers_cannot_change_the_cache(corpus):
    again = paragraphs()
    assert again == corpus and again is not corpus
    again.clear()
    assert paragraphs() == corpus


def test_the_corpus_mixes_help_topics_and_docstrings(corpus):
    from pydoc_data.topics import topics

    topic_paragraphs = {" ".join(chunk.split()) for text in topics.values() for chunk in re.split(r"\n\s*\n", text)}
    from_topics = sum(text in topic_paragraphs for text in corpus)
    assert from_topics >= 500 and len(corpus) - from_topics >= 2_000, from_topics


def test_the_walk_skips_test_suites_third_party_packages_and_caches():
    stdlib = sysconfig.get_paths()["stdlib"]
    sources = corpus_module._stdlib_sources(stdlib)
    assert os.path.join(stdlib, "json", "__init__.py") in sources
    skipped = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    for path in sources:
        assert not skipped & set(os.path.relpath(path, stdlib).split(os.sep)), path


def test_the_fingerprint_is_16_hex_digits_and_stable():
    fingerprint = corpus_fingerprint()
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    assert corpus_fingerprint() == fingerprint


_IMPORT_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("corpus_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
before = set(sys.modules)
count = len(module.paragraphs())
print(json.dumps({"count": count, "new": sorted(set(sys.modules) - before), "all": sorted(sys.modules)}))
"""


def test_building_the_corpus_imports_no_standard_library_module_but_the_help_topics():
    # A fresh interpreter that loads corpus.py alone (not the orchestrator package, which imports torch and more).
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, corpus_module.__file__], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["count"] == len(paragraphs())
    assert "pydoc_data.topics" in report["new"]
    # Source codecs (for `# coding:` lines) and sysconfig's build data are loaded by parsing, not by importing docs.
    unexpected = [
        name for name in report["new"]
        if name not in {"pydoc_data", "pydoc_data.topics"} and not name.startswith(("encodings.", "_sysconfigdata"))
    ]  # fmt: skip
    assert unexpected == []
    for name in ("tkinter", "turtle", "turtledemo", "idlelib", "lib2to3", "asyncio", "unittest", "email", "pydoc"):
        assert name not in report["all"], name


# --- first_sentence() -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paragraph", "sentence"),
    [
        ("The cat sat on the mat. Then it left.", "The cat sat on the mat."),
        ("Is this really a question? Yes it is.", "Is this really a question?"),
        ("Stop right there now! Or else.", "Stop right there now!"),
        ("E.g. this is short. And more.", "E.g. this is short."),  # "E.g." alone is under three words
        ("Hi. Yes. It works. Done.", "Hi. Yes. It works."),
        ("Version 3.11 changed the default. More follows.", "Version 3.11 changed the default."),
        ("No sentence end in this paragraph", "No sentence end in this paragraph"),
        ("One two three four.", "One two three four."),
        ("  Spread\nover   lines. Second sentence here.", "Spread over lines."),
    ],
)
def test_first_sentence(paragraph, sentence):
    assert first_sentence(paragraph) == sentence


# --- split_corpus() ---------------------------------------------------------------------------------------------


def test_splits_have_the_requested_sizes():
    splits = split_corpus(_toy_corpus(), **SPLIT_SIZES)
    assert splits.sizes() == {
        "train": 10, "val_queries": 4, "val_passages": 5, "test_queries": 3, "test_passages": 6,
    }  # fmt: skip
    assert all(isinstance(getattr(splits, field.name), tuple) for field in dataclasses.fields(splits))
    with pytest.raises(dataclasses.FrozenInstanceError):
        splits.train = ()  # type: ignore[misc]


def test_splits_are_disjoint_paragraphs_with_first_sentences_as_queries():
    texts = _toy_corpus()
    splits = split_corpus(texts, **SPLIT_SIZES)
    whole = splits.train + splits.val_passages + splits.test_passages
    assert set(whole) <= set(texts)
    by_first_sentence = {first_sentence(text): text for text in texts}
    queried = [by_first_sentence[query] for query in splits.val_queries + splits.test_queries]
    used = list(whole) + queried
    assert len(set(used)) == len(used), "no paragraph serves two splits"
    assert not set(splits.val_queries + splits.test_queries) & set(whole), "a query is never a passage"


def test_splits_are_deterministic_per_seed_and_change_with_it():
    texts = _toy_corpus()
    assert split_corpus(texts, **SPLIT_SIZES) == split_corpus(texts, **SPLIT_SIZES, seed=0)
    assert split_corpus(texts, **SPLIT_SIZES, seed=3) == split_corpus(list(texts), **SPLIT_SIZES, seed=3)
    assert split_corpus(texts, **SPLIT_SIZES, seed=1) != split_corpus(texts, **SPLIT_SIZES, seed=0)
    firsts = {split_corpus(texts, **SPLIT_SIZES, seed=seed).val_passages for seed in range(5)}
    assert len(firsts) == 5


def test_no_text_repeats_even_when_a_first_sentence_is_another_paragraph():
    # Each short paragraph is exactly the first sentence of a longer one, and the input repeats itself.
    short = [f"Short paragraph number {i} here." for i in range(30)]
    texts = short + [f"{text} And then a tail follows." for text in short] + short[:5]
    for seed in range(20):
        splits = split_corpus(texts, **SPLIT_SIZES, seed=seed)
        every = _all_texts(splits)
        assert len(set(every)) == len(every), seed
        assert not set(splits.val_queries + splits.test_queries) & set(splits.val_passages + splits.test_passages)


def test_the_real_corpus_splits_into_disjoint_sets(corpus):
    sizes = dict(n_train=4_000, n_val_passages=1_000, n_val_queries=500, n_test_passages=2_000, n_test_queries=1_000)
    splits = split_corpus(corpus, **sizes)
    assert list(splits.sizes().values()) == [4_000, 500, 1_000, 1_000, 2_000]
    every = _all_texts(splits)
    assert len(set(every)) == len(every)


@pytest.mark.parametrize("field", sorted(SPLIT_SIZES))
def test_a_split_size_below_one_is_rejected_by_name(field):
    with pytest.raises(ValueError, match=rf"^{field}: must be at least 1, got 0$"):
        split_corpus(_toy_corpus(), **{**SPLIT_SIZES, field: 0})
    with pytest.raises(TypeError, match=rf"^{field}: must be an int"):
        split_corpus(_toy_corpus(), **{**SPLIT_SIZES, field: 2.5})


def test_a_corpus_too_small_says_how_many_paragraphs_are_needed_and_present():
    with pytest.raises(ValueError, match=r"needs at least 28 distinct paragraphs .* but the corpus has 20"):
        split_corpus(_toy_corpus(20), **SPLIT_SIZES)
    with pytest.raises(ValueError, match=r"needs at least 28 distinct paragraphs .* but the corpus has 27"):
        split_corpus(_toy_corpus(27) + _toy_corpus(10), **SPLIT_SIZES)  # repeats do not count


def test_running_out_of_distinct_queries_is_an_error():
    texts = [f"All of these start alike. Tail number {i}." for i in range(40)]
    with pytest.raises(ValueError, match=r"needs 28 paragraphs .* has only \d+ such among its 40"):
        split_corpus(texts, **SPLIT_SIZES)
