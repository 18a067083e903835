"""Bring your own Hugging Face encoder: compress a local sentence-embedding model, judged on your own texts.

Name the factory in a search config (see examples/hf_encoder.yaml):

    task:
      name: examples.hf_encoder_task:make_task
      args: {model_path: /path/to/my-encoder, beir_folder: /path/to/my-beir-set, metric: ndcg_at_10}

`model_path` is a folder written by `model.save_pretrained(folder)` and
`tokenizer.save_pretrained(folder)`; it is loaded with `local_files_only=True`, so
nothing is downloaded. Quality is retrieval on relevance labels (nDCG@10 by default,
recall@10 or MRR@10), the teacher measured on the same labels:

- `beir_folder`: your own labels in BEIR's format (corpus.jsonl, queries.jsonl,
  qrels/dev.tsv for val, qrels/test.tsv for test; graded scores count in nDCG). Every
  problem exits 2 naming the file and line.
- otherwise an inverse-cloze set built from `texts_file` (one paragraph per line) or
  Python's own documentation: a paragraph's first sentence is the query, the rest of
  it the relevant passage, other paragraphs distractors.

Distillation trains on `texts_file` (else Python's documentation), less every text
of val and test. Agreement with the uncompressed model (`agreement_at_10`, `fidelity`)
is recorded beside the metric as a diagnostic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.safe_files import MAX_TABLE_BYTES, read_text
from orchestrator.tasks.text.beir import read_beir
from orchestrator.tasks.text.corpus import paragraphs
from orchestrator.tasks.text.embedding import EmbeddingTask


class HFEncoderTask(EmbeddingTask):
    """Any local BERT-style encoder, mean-pooled and L2-normalised, judged against itself."""

    name = "hf-encoder"  # names the cache files of tokenized texts and teacher embeddings


def read_texts(texts_file: str) -> list[str]:
    """The non-blank lines of a UTF-8 file, stripped: one text (a ticket, a question, a passage) per line."""
    path = Path(texts_file).expanduser()
    if not path.is_file():
        raise InputError(f"task.args.texts_file: {path} is not a file; expected UTF-8 text, one text per line")
    # Refuses a file that is not UTF-8 or is implausibly large, naming the field.
    text = read_text(path, MAX_TABLE_BYTES, what=f"task.args.texts_file: {path}", allow_symlink=True)
    return [line.strip() for line in text.splitlines() if line.strip()]


def make_task(
    model_path: str, texts_file: str | None = None, beir_folder: str | None = None, **settings: Any
) -> HFEncoderTask:
    """The task a config names as `examples.hf_encoder_task:make_task`; `settings` are EmbeddingTask's.

    Settings: metric (ndcg_at_10, recall_at_10, mrr_at_10; agreement_at_10 or fidelity
    to judge by agreement with the teacher), seq_len (tokens per text, at most the
    model's positions), n_train, split_seed, and for the built inverse-cloze set
    n_val_passages, n_val_queries, n_test_passages, n_test_queries (a BEIR folder
    brings its own). With your own texts, too few paragraphs of two sentences or more
    for those sizes is an error that says how many there are.
    """
    labeled = None
    if beir_folder is not None:
        folder = Path(beir_folder).expanduser()
        if not folder.is_dir():
            raise InputError(f"task.args.beir_folder: {folder} is not a folder; expected a BEIR folder (corpus.jsonl, ...)")
        labeled = read_beir(folder)  # InputError naming the file and line of the first problem
    texts = read_texts(texts_file) if texts_file is not None else paragraphs()
    return HFEncoderTask(texts, labeled=labeled, model_path=model_path, **settings)
