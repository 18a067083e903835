"""A fixed English corpus built offline from Python's own documentation, for evaluating sentence-embedding models.

The corpus is the prose paragraphs of `pydoc_data.topics` (the language reference pages that `help()` shows) and of
the standard library's module, class and function docstrings. Docstrings are read by parsing the source files with
`ast`, never by importing the modules, so building the corpus runs no library code and needs no network. The
corpus changes with the Python version: `corpus_fingerprint()` names it in cache keys.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import hashlib
import os
import random
import re
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

MIN_WORDS = 8
MAX_WORDS = 200
# Share of characters that must be letters or spaces: drops tables, signatures and data dumps.
MIN_ALPHA_FRACTION = 0.6
# A paragraph "looks like code" when it holds a doctest prompt or when these characters (rare in English prose, common
# in code, grammar rules and tables) are more than this share of it. Parentheses and semicolons are left out: prose
# docstrings use them freely.
CODE_CHARS = "=[]{}<>|\\#@"
MAX_CODE_FRACTION = 0.02

# Directories never walked: installed third-party packages, test suites, bytecode caches.
_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test"})
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n")
_SENTENCE_END = re.compile(r"[.?!] ")
_LETTER = re.compile(r"[^\W\d_]")  # a word character that is neither a digit nor "_": a letter
_CODE_CHAR = re.compile("[" + re.escape(CODE_CHARS) + "]")
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
# The fields through which statements nest: blocks, else/finally blocks, except handlers, match cases.
_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")


def paragraphs() -> list[str]:
    """The corpus: distinct prose paragraphs of Python's documentation, sorted, so every run sees the same list."""
    return list(_cached_paragraphs())


def corpus_fingerprint() -> str:
    """A 16-hex-digit sha256 of the corpus, for cache keys: the corpus differs between Python versions."""
    return _cached_fingerprint()


def first_sentence(paragraph: str) -> str:
    """The paragraph's first sentence, used as a short query; the whole paragraph when no sentence end is found.

    A sentence ends at the first ". ", "? " or "! " that has at least three words before it (so "e.g. " or "I. "
    early in a paragraph do not cut it).
    """
    text = " ".join(paragraph.split())
    for match in _SENTENCE_END.finditer(text):
        candidate = text[: match.start() + 1]
        if len(candidate.split()) >= 3:
            return candidate
    return text


@dataclass(frozen=True)
class CorpusSplits:
    """Disjoint texts for distillation (`train`) and for validation and test retrieval (queries against passages).

    Passages and train texts are whole paragraphs (a tokenizer truncates the long ones); queries are first sentences.
    """

    train: tuple[str, ...]
    val_queries: tuple[str, ...]
    val_passages: tuple[str, ...]
    test_queries: tuple[str, ...]
    test_passages: tuple[str, ...]

    def sizes(self) -> dict[str, int]:
        """How many texts each split holds, for logs and reports."""
        return {field.name: len(getattr(self, field.name)) for field in fields(self)}


def split_corpus(
    texts: Sequence[str],
    *,
    n_train: int,
    n_val_passages: int,
    n_val_queries: int,
    n_test_passages: int,
    n_test_queries: int,
    seed: int = 0,
) -> CorpusSplits:
    """Cut a seeded permutation of the paragraphs into disjoint splits, so no text is both trained on and evaluated.

    The distinct paragraphs are shuffled with `random.Random(seed)` and consumed in order: val passages, val queries,
    test passages, test queries, train. Passages and train texts are whole paragraphs; a query is the first sentence
    of a paragraph of its own. Each paragraph is used at most once, and a paragraph whose text (its first sentence,
    for a query) was already taken is skipped, so no string appears twice across or within the splits: in particular
    a query is never a passage. The same texts and seed always give the same splits.
    """
    counts = {
        "n_val_passages": n_val_passages,
        "n_val_queries": n_val_queries,
        "n_test_passages": n_test_passages,
        "n_test_queries": n_test_queries,
        "n_train": n_train,
    }
    for name, value in counts.items():
        _check_count(name, value)
    pool = list(dict.fromkeys(texts))
    needed = sum(counts.values())
    if len(pool) < needed:
        sizes = ", ".join(f"{name}={value}" for name, value in counts.items())
        raise ValueError(
            f"split_corpus needs at least {needed} distinct paragraphs ({sizes}), but the corpus has {len(pool)}"
        )
    random.Random(seed).shuffle(pool)
    taker = _Taker(pool, needed)
    val_passages = taker.take(n_val_passages, as_query=False)
    val_queries = taker.take(n_val_queries, as_query=True)
    test_passages = taker.take(n_test_passages, as_query=False)
    test_queries = taker.take(n_test_queries, as_query=True)
    train = taker.take(n_train, as_query=False)
    return CorpusSplits(train, val_queries, val_passages, test_queries, test_passages)


class _Taker:
    """Walks the shuffled paragraphs once, handing out texts not handed out before."""

    def __init__(self, pool: list[str], needed: int):
        self._pool = pool
        self._needed = needed
        self._next = 0
        self._used: set[str] = set()

    def take(self, count: int, *, as_query: bool) -> tuple[str, ...]:
        """The next `count` unused texts: first sentences when `as_query`, whole paragraphs otherwise."""
        taken: list[str] = []
        while len(taken) < count:
            if self._next >= len(self._pool):
                raise ValueError(
                    f"split_corpus needs {self._needed} paragraphs whose texts (first sentences, for queries) are all "
                    f"different, but the corpus has only {len(self._used)} such among its {len(self._pool)} paragraphs"
                )
            paragraph = self._pool[self._next]
            self._next += 1
            text = first_sentence(paragraph) if as_query else paragraph
            if text not in self._used:
                self._used.add(text)
                taken.append(text)
        return tuple(taken)


def _check_count(name: str, value: int) -> None:
    """Reject a split size that is not a positive int, naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be at least 1, got {value}")


@functools.lru_cache(maxsize=1)
def _cached_paragraphs() -> tuple[str, ...]:
    """Build the corpus once per process (one to two seconds, mostly parsing the standard library)."""
    with _gc_paused():  # about 2.5x faster
        distinct = set(map(_normalize, _raw_paragraphs()))
    return tuple(sorted(filter(_is_prose, distinct)))


@functools.lru_cache(maxsize=1)
def _cached_fingerprint() -> str:
    """Hash the corpus once per process."""
    digest = hashlib.sha256()
    for text in _cached_paragraphs():
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _raw_paragraphs() -> Iterator[str]:
    """Every blank-line-separated chunk of the help topics and of the standard library's docstrings, unfiltered."""
    from pydoc_data.topics import topics  # data only: a module holding one dict of strings

    for text in topics.values():
        yield from _BLANK_LINE.split(text)
    for docstring in _stdlib_docstrings():
        yield from _BLANK_LINE.split(docstring)


def _stdlib_docstrings() -> Iterator[str]:
    """Module, class and function docstrings of the standard library's sources, read with `ast`, never imported."""
    for path in _stdlib_sources(sysconfig.get_paths()["stdlib"]):
        tree = _parse(path)
        if tree is None:
            continue
        for node in _documented_nodes(tree):
            # clean=False: cleaning imports `inspect`, and _normalize flattens the indentation anyway.
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                yield docstring


def _documented_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """The module and every class and function in it, however nested; ast.walk finds the same, six times slower."""
    # Only statement lists can hold a def or class, so expressions are never visited.
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _DOCUMENTED):
            yield node
        for name in _STATEMENT_LISTS:
            statements = getattr(node, name, None)
            if isinstance(statements, list):
                stack.extend(statements)


def _stdlib_sources(root: str) -> list[str]:
    """The `.py` files under the standard library directory, outside skipped directories, in sorted order."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d not in _SKIPPED_DIRS)
        found.extend(os.path.join(directory, name) for name in sorted(files) if name.endswith(".py"))
    return found


def _parse(path: str) -> ast.Module | None:
    """The file's syntax tree, or None when it cannot be read, decoded or parsed."""
    try:
        with open(path, "rb") as source:
            return ast.parse(source.read(), filename=path)
    except (OSError, SyntaxError, ValueError, RecursionError):  # unreadable, undecodable, null bytes, too deep
        return None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: syntax trees are millions of short-lived objects it would scan repeatedly."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _normalize(text: str) -> str:
    """Collapse every run of whitespace into one space."""
    return " ".join(text.split())


def _is_prose(text: str) -> bool:
    """Whether a normalized paragraph reads as English prose: its length in words, its letters, no code."""
    if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
        return False
    if len(_LETTER.findall(text)) + text.count(" ") < MIN_ALPHA_FRACTION * len(text):
        return False
    return not _looks_like_code(text)


def _looks_like_code(text: str) -> bool:
    """A doctest prompt anywhere, or too many characters typical of code rather than prose."""
    if ">>>" in text:
        return True
    return len(_CODE_CHAR.findall(text)) > MAX_CODE_FRACTION * len(text)
