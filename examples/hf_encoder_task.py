"""Bring your own Hugging Face encoder: compress a local sentence-embedding model, judged on your own texts.

Name the factory in a search config (see examples/hf_encoder.yaml):

    task:
      name: examples.hf_encoder_task:make_task
      args: {model_path: /path/to/my-encoder, texts_file: /path/to/tickets.txt, metric: recall_at_10}

`model_path` is a folder written by `model.save_pretrained(folder)` and
`tokenizer.save_pretrained(folder)`; it is loaded with `local_files_only=True`, so
nothing is downloaded. Quality is agreement with the uncompressed model (fidelity or
recall@10), measured on `texts_file` (one text per line) or, without one, on
paragraphs of Python's own documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.safe_files import MAX_TABLE_BYTES, read_text
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


def make_task(model_path: str, texts_file: str | None = None, **settings: Any) -> HFEncoderTask:
    """The task a config names as `examples.hf_encoder_task:make_task`; `settings` are EmbeddingTask's.

    Settings: metric (recall_at_10 or fidelity), seq_len (tokens per text, at most the
    model's positions), n_train, n_val_passages, n_val_queries, n_test_passages,
    n_test_queries and split_seed. With your own texts, the split sizes must add up to
    no more than its distinct lines; otherwise the error says how many are needed.
    """
    texts = read_texts(texts_file) if texts_file is not None else paragraphs()
    return HFEncoderTask(texts, model_path=model_path, **settings)
