"""Labeled retrieval sets: queries, passages and graded relevance, built from a corpus (inverse cloze) or read from BEIR.

A `LabeledSplit` is what a text task judges retrieval quality on: every query's relevant passages, graded,
among distractors. The built-in set is an inverse-cloze task over the corpus's paragraphs, as in ORQA and
Contriever's evaluation: the query is a paragraph's first sentence and its one relevant passage is the rest of
that paragraph; the other passages are whole paragraphs of their own, distractors.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.tasks.text.corpus import first_sentence


@dataclass(frozen=True)
class LabeledSplit:
    """Queries against passages with graded labels: `qrels[q]` maps a passage's index to its grade (> 0: relevant)."""

    queries: tuple[str, ...]
    passages: tuple[str, ...]
    qrels: tuple[Mapping[int, int], ...]

    def __post_init__(self) -> None:
        if len(self.qrels) != len(self.queries):
            raise ValueError(f"{len(self.queries)} queries but labels for {len(self.qrels)}")
        for q, labels in enumerate(self.qrels):
            bad = [p for p in labels if not 0 <= p < len(self.passages)]
            if bad:
                raise ValueError(f"query {q}: passage indices {bad} are outside the {len(self.passages)} passages")

    def texts(self) -> tuple[str, ...]:
        """Queries then passages: the order a task encodes them in."""
        return self.queries + self.passages


@dataclass(frozen=True)
class InverseClozeSets:
    """The built-in labeled val and test sets, and every paragraph left for training (disjoint from both)."""

    val: LabeledSplit
    test: LabeledSplit
    train: tuple[str, ...]


def cloze_pair(paragraph: str) -> tuple[str, str] | None:
    """(first sentence, rest of the paragraph), or None where the paragraph has no second sentence."""
    text = " ".join(paragraph.split())
    query = first_sentence(text)
    rest = text[len(query) :].strip()
    return (query, rest) if query != text and len(rest.split()) >= 3 else None


def inverse_cloze_sets(
    paragraphs: Sequence[str],
    *,
    n_queries: int,
    n_passages: int,
    seed: int = 0,
    n_test_queries: int | None = None,
    n_test_passages: int | None = None,
) -> InverseClozeSets:
    """Seeded, disjoint val and test inverse-cloze sets of `n_queries` queries among `n_passages` passages each.

    The distinct paragraphs are shuffled with `random.Random(seed)`. Each split takes `n_queries` paragraphs that
    split into a first sentence and a rest (the query and its relevant passage), then `n_passages - n_queries` whole
    paragraphs as distractors (test: `n_test_queries` among `n_test_passages`, the val sizes where None); passages
    are shuffled within the split so position says nothing. No text is taken twice. Everything else is the training text, less any paragraph that opens with a held-out query. The same
    paragraphs and seed always give the same sets.
    """
    sizes = {"val": (n_queries, n_passages), "test": (n_test_queries or n_queries, n_test_passages or n_passages)}
    for split, (queries, passages) in sizes.items():
        if queries < 1 or passages <= queries:
            raise ValueError(f"{split}: need at least 1 query and more passages than queries; got {queries} and {passages}")
    pool = list(dict.fromkeys(" ".join(p.split()) for p in paragraphs))
    rng = random.Random(seed)
    rng.shuffle(pool)
    used: set[int] = set()  # paragraphs taken
    taken: set[str] = set()  # texts taken: no query or passage appears twice, across splits either

    def take_split(n_queries: int, n_passages: int) -> LabeledSplit:
        pairs: list[tuple[str, str]] = []
        for i, paragraph in enumerate(pool):
            if len(pairs) == n_queries:
                break
            pair = None if i in used else cloze_pair(paragraph)
            if pair is not None and not (set(pair) & taken):
                used.add(i)
                taken.update(pair)
                pairs.append(pair)
        distractors = [i for i in range(len(pool)) if i not in used and pool[i] not in taken][: n_passages - n_queries]
        if len(pairs) < n_queries or len(distractors) < n_passages - n_queries:
            paired = sum(cloze_pair(p) is not None for p in pool)
            raise ValueError(
                f"the corpus has {len(pool)} distinct paragraphs, {paired} of two sentences or more: too few for val and "
                f"test of {sizes['val'][0]} and {sizes['test'][0]} queries (each the first sentence of such a paragraph) "
                f"among {sizes['val'][1]} and {sizes['test'][1]} passages"
            )
        used.update(distractors)
        taken.update(pool[i] for i in distractors)
        passages = [rest for _, rest in pairs] + [pool[i] for i in distractors]
        order = list(range(len(passages)))
        rng.shuffle(order)
        position = {old: new for new, old in enumerate(order)}
        return LabeledSplit(
            queries=tuple(query for query, _ in pairs),
            passages=tuple(passages[old] for old in order),
            qrels=tuple({position[q]: 1} for q in range(len(pairs))),
        )

    val = take_split(*sizes["val"])
    test = take_split(*sizes["test"])
    # Training text shares no held-out text, not even a first sentence that is some held-out query.
    train = tuple(p for i, p in enumerate(pool) if i not in used and p not in taken and first_sentence(p) not in taken)
    return InverseClozeSets(val=val, test=test, train=train)
