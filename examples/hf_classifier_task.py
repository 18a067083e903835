"""Bring your own Hugging Face classifier: compress a fine-tuned sequence classifier, judged on your labeled texts.

Name the factory in a search config (see examples/hf_classifier.yaml):

    task:
      name: examples.hf_classifier_task:make_task
      args: {model_path: /path/to/my-classifier, data_file: /path/to/labeled.csv, metric: accuracy}

`model_path` is a folder written by `model.save_pretrained(folder)` and `tokenizer.save_pretrained(folder)` for an
`AutoModelForSequenceClassification` (DistilBERT intent classifiers, RoBERTa or XLM-R toxicity models, ...), loaded
with `local_files_only=True`: nothing is downloaded. The data is a CSV (with a header) or JSON-lines file of
`text,label` rows, a label being a class name from the model's `id2label` or a class id; it is split seeded and
stratified into train (distillation, calibration), val (what the search optimizes) and test (held out), or given as
`train_file`, `val_file` and `test_file`. Quality is accuracy (Wilson interval) or macro-F1 (bootstrap), on labels.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from orchestrator.errors import InputError
from orchestrator.safe_files import MAX_TABLE_BYTES, read_text
from orchestrator.tasks.base import Split, Task
from orchestrator.tasks.batches import Inputs
from orchestrator.tasks.text.encoder import (
    checked_config,
    is_sequence_classifier,
    load_pretrained,
    tokenize,
    trim_padding,
)

log = logging.getLogger(__name__)
Row = tuple[str, str, str]  # text, label, where it came from ("file:line")


class ClassifierSettings(BaseModel):
    """The model folder, the labeled data and how it is split and judged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str
    data_file: str | None = Field(None, description="one CSV or JSONL file, split seeded and stratified")
    train_file: str | None = None
    val_file: str | None = None
    test_file: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    seq_len: int = Field(128, ge=8, description="tokens per text, padded and truncated (the serving length)")
    val_fraction: float = Field(0.2, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    split_seed: int = 0

    @model_validator(mode="after")
    def _one_way_to_give_data(self) -> "ClassifierSettings":
        files = (self.train_file, self.val_file, self.test_file)
        if (self.data_file is None) == all(f is None for f in files) or (self.data_file is None and None in files):
            raise ValueError("give either data_file, or all three of train_file, val_file and test_file")
        return self


class SequenceClassifier(nn.Module):
    """A Hugging Face sequence classifier as a module of (input_ids, attention_mask) → class logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def read_labeled(path: Path, text_column: str, label_column: str, field: str) -> list[Row]:
    """(text, label, "file:line") of every row of a CSV (with a header) or JSON-lines file, each checked."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{field}: {path} is not a file; expected a CSV or JSONL file of {text_column},{label_column} rows")
    text = read_text(path, MAX_TABLE_BYTES, what=f"{field}: {path}", allow_symlink=True)
    rows: list[Row] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
                if not isinstance(record, dict):
                    raise InputError(f"{path}:{number}: expected a JSON object with {text_column!r} and {label_column!r}")
                records.append((number, record))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in (text_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r}; its header has {reader.fieldnames}")
        records = [(reader.line_num, record) for record in reader]  # the line a row ends on
    for number, record in records:
        for column in (text_column, label_column):
            if column not in record:
                raise InputError(f"{path}:{number}: no {column!r}")
        value, label = ("" if record[c] is None else str(record[c]).strip() for c in (text_column, label_column))
        if not value:
            raise InputError(f"{path}:{number}: empty text in column {text_column!r}")
        if not label:
            raise InputError(f"{path}:{number}: empty label in column {label_column!r}")
        rows.append((value, label, f"{path}:{number}"))
    if not rows:
        raise InputError(f"{field}: {path} holds no rows")
    return rows


def unique_texts(rows: list[Row]) -> list[Row]:
    """Each text once (a text in two splits would be judged on what it was trained on); a text labeled two ways is refused."""
    first: dict[str, Row] = {}
    for row in rows:
        seen = first.setdefault(" ".join(row[0].split()), row)
        if seen[1] != row[1]:
            raise InputError(f"{row[2]}: the same text as {seen[2]} with another label ({row[1]!r}, not {seen[1]!r})")
    return list(first.values())


def stratified_split(rows: list[Row], val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[Row]]:
    """Seeded train/val/test split that keeps each label's share; every label keeps at least one training row."""
    by_label: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    splits: dict[str, list[Row]] = {"train": [], "val": [], "test": []}
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_val = min(round(val_fraction * len(group)), max(len(group) - 1, 0))
        n_test = min(round(test_fraction * len(group)), max(len(group) - 1 - n_val, 0))
        splits["val"] += group[:n_val]
        splits["test"] += group[n_val : n_val + n_test]
        splits["train"] += group[n_val + n_test :]
    for part in splits.values():
        rng.shuffle(part)
    return splits


def label_ids(names: dict[int, str], splits: dict[str, list[Row]]) -> dict[str, int]:
    """Each label of the data → the model's class id, by name (id2label) or as an id; checked against train."""
    by_name = {name: i for i, name in names.items()}
    seen = sorted({label for rows in splits.values() for _, label, _ in rows})
    if all(label in by_name for label in seen):
        mapping = {label: by_name[label] for label in seen}
    elif all(label.isdigit() and int(label) in names for label in seen):
        mapping = {label: int(label) for label in seen}
    else:
        unknown = [label for label in seen if label not in by_name and not (label.isdigit() and int(label) in names)]
        raise InputError(
            f"task.args: labels {unknown[:5]} match none of the model's {len(names)} classes "
            f"(config.json id2label: {[names[i] for i in sorted(names)]}); give class names or ids 0..{len(names) - 1}"
        )
    trained = {label for _, label, _ in splits["train"]}
    for split in ("val", "test"):
        for _, label, where in splits[split]:
            if label not in trained:
                raise InputError(f"{where}: label {label!r} is in {split} but never in train, so nothing can learn it")
    return mapping


class ClassifierTask(Task):
    """Compress a fine-tuned sequence classifier; quality is accuracy or macro-F1 on labeled held-out texts."""

    name = "hf-classifier"
    higher_is_better = True
    sequence_inputs = ("input_ids", "attention_mask")
    predict_batch_size = 64  # texts judged at once: a transformer's activations grow with texts × length

    @property
    def label(self) -> str:
        """The classifier's folder name: what the user compresses."""
        return Path(self.settings.model_path).expanduser().resolve().name

    def __init__(self, **settings: Any) -> None:
        self.settings = ClassifierSettings(**settings)
        self.metric = self.settings.metric
        self._teacher, self.tokenizer, self.label_names = self._load()
        s = self.settings
        if s.data_file is not None:
            rows = unique_texts(read_labeled(Path(s.data_file), s.text_column, s.label_column, "task.args.data_file"))
            self.rows = stratified_split(rows, s.val_fraction, s.test_fraction, s.split_seed)
        else:
            self.rows = {
                split: read_labeled(Path(path), s.text_column, s.label_column, f"task.args.{split}_file")
                for split, path in (("train", s.train_file), ("val", s.val_file), ("test", s.test_file))
            }
        ids = label_ids(dict(enumerate(self.label_names)), self.rows)
        self._data = {}
        seen: set[bytes] = set()
        for split in ("train", "val", "test"):  # truncated to seq_len tokens, two texts can read the same to the model
            inputs = tokenize(self.tokenizer, [t for t, _, _ in self.rows[split]], s.seq_len)
            keys = [row.numpy().tobytes() for row in inputs["input_ids"]]
            keep = [i for i, key in enumerate(keys) if split == "train" or key not in seen]
            if len(keep) < len(keys):
                log.warning("%s: %d text(s) left out: cut to %d tokens they read as an earlier split's", split, len(keys) - len(keep), s.seq_len)
            seen.update(keys)
            self.rows[split] = [self.rows[split][i] for i in keep]
            index = torch.tensor(keep, dtype=torch.long)
            self._data[split] = (
                {name: t[index] for name, t in inputs.items()},
                torch.tensor([ids[lab] for _, lab, _ in self.rows[split]], dtype=torch.long),
            )

    def _load(self) -> tuple[nn.Module, Any, list[str]]:
        """The classifier (eval, fp32, CPU), its tokenizer and its class names, from the local folder."""
        folder = Path(self.settings.model_path).expanduser()
        config = checked_config(folder, self.settings.seq_len)
        if not is_sequence_classifier(config):
            raise InputError(
                f"task.args.model_path: {folder} holds {getattr(config, 'architectures', None) or 'a model with no architectures in config.json'}, "
                "not a sequence classifier (…ForSequenceClassification); for a sentence encoder use examples.hf_encoder_task"
            )
        model, tokenizer = load_pretrained(folder, "AutoModelForSequenceClassification")
        names = [str(config.id2label[i]) for i in range(config.num_labels)]
        return SequenceClassifier(model).eval(), tokenizer, names

    def teacher(self) -> nn.Module:
        """The fine-tuned classifier, returning class logits, in eval mode on the CPU."""
        return self._teacher

    def data(self, split: Split) -> tuple[Inputs, torch.Tensor]:
        """Token ids and masks (N, seq_len) and class ids."""
        if split not in self._data:
            raise ValueError(f"split must be one of ('train', 'val', 'test'), got {split!r}")
        return self._data[split]

    def compact(self, inputs: Inputs) -> Inputs:
        """Drop padding columns no text in the batch uses."""
        return trim_padding(inputs)

    def save_preprocessor(self, folder: Path) -> dict[str, Any]:
        """The tokenizer's files and the class names, for an export that labels raw text exactly as this task did."""
        self.tokenizer.save_pretrained(str(folder))
        return {"max_length": self.settings.seq_len, "input_names": list(self.sequence_inputs), "labels": list(self.label_names)}


def make_task(**settings: Any) -> ClassifierTask:
    """The task a config names as `examples.hf_classifier_task:make_task`; settings are ClassifierSettings'."""
    return ClassifierTask(**settings)
