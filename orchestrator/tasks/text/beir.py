"""Read a retrieval set in BEIR's format, the format BEIR and MTEB publish theirs in, checked line by line.

    FOLDER/corpus.jsonl     {"_id": "d1", "title": "...", "text": "..."} per line
    FOLDER/queries.jsonl    {"_id": "q1", "text": "..."} per line
    FOLDER/qrels/dev.tsv    query-id <TAB> corpus-id <TAB> score, after a header line (val)
    FOLDER/qrels/test.tsv   the same (test)

A passage is its title and text joined by a space, as BEIR encodes it; every split retrieves from the whole
corpus. A split keeps the queries that have at least one relevant passage (score > 0). Anything else wrong exits
2 with the file and line: a missing file, a row naming a query or passage that is not there, a score that is not
a non-negative integer, a split where no query has a relevant passage.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.tasks.text.labeled import LabeledSplit

QRELS = {"val": "qrels/dev.tsv", "test": "qrels/test.tsv"}
FILES = ("corpus.jsonl", "queries.jsonl", *QRELS.values())


def _jsonl(path: Path, fields: tuple[str, ...]) -> dict[str, dict]:
    """id → record of a JSON-lines file, each line an object with a string `_id` and the string `fields`."""
    records: dict[str, dict] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("_id"), str):
                raise InputError(f"{path}:{number}: expected an object with a string \"_id\"")
            for name in fields:
                if not isinstance(record.get(name, ""), str):
                    raise InputError(f"{path}:{number}: \"{name}\" must be a string")
            if record["_id"] in records:
                raise InputError(f"{path}:{number}: id {record['_id']!r} appears twice")
            records[record["_id"]] = record
    if not records:
        raise InputError(f"{path}: holds no records")
    return records


def _qrels(path: Path, queries: dict, corpus: dict) -> dict[str, dict[str, int]]:
    """query id → {corpus id: score} of a BEIR qrels file, every row checked against the queries and the corpus."""
    labels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            cells = line.rstrip("\n").split("\t")
            if number == 1 and cells[:2] == ["query-id", "corpus-id"]:
                continue
            if not line.strip():
                continue
            if len(cells) != 3:
                raise InputError(f"{path}:{number}: expected query-id, corpus-id and score separated by tabs")
            query, passage, score = cells
            if query not in queries:
                raise InputError(f"{path}:{number}: query {query!r} is not in queries.jsonl")
            if passage not in corpus:
                raise InputError(f"{path}:{number}: passage {passage!r} is not in corpus.jsonl")
            if not score.strip().isdigit():
                raise InputError(f"{path}:{number}: relevance {score!r} must be a non-negative integer")
            labels.setdefault(query, {})[passage] = int(score)
    return labels


def read_beir(folder: Path) -> dict[str, LabeledSplit]:
    """{'val': …, 'test': …} from a BEIR folder; raises InputError naming the file and line of the first problem."""
    folder = Path(folder)
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder}: a BEIR folder needs {', '.join(FILES)}; missing {', '.join(missing)}")
    corpus = _jsonl(folder / "corpus.jsonl", ("title", "text"))
    queries = _jsonl(folder / "queries.jsonl", ("text",))
    ids = list(corpus)
    index = {pid: i for i, pid in enumerate(ids)}
    passages = tuple(" ".join(p for p in (corpus[pid].get("title", ""), corpus[pid].get("text", "")) if p).strip() for pid in ids)
    splits = {}
    for split, name in QRELS.items():
        labels = _qrels(folder / name, queries, corpus)
        kept = [q for q in labels if any(score > 0 for score in labels[q].values())]
        if not kept:
            raise InputError(f"{folder / name}: no query has a relevant passage (a score above 0); the {split} split needs one")
        splits[split] = LabeledSplit(
            queries=tuple(queries[q]["text"] for q in kept),
            passages=passages,
            qrels=tuple({index[p]: score for p, score in labels[q].items()} for q in kept),
        )
    return splits
