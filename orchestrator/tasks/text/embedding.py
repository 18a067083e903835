"""A sentence-embedding task for any local Hugging Face encoder folder, judged on labeled retrieval.

Quality is what a user of a retrieval model measures: `ndcg_at_10` (the default),
`recall_at_10` or `mrr_at_10` against relevance labels, as BEIR and MTEB report them.
The labels come from the corpus itself (an inverse-cloze set: a paragraph's first
sentence is the query, the rest of that paragraph its one relevant passage, other
paragraphs distractors; seeded, disjoint from the distillation texts) or from a BEIR
folder. The teacher is measured on the same labels, never assumed perfect, and the
drop is teacher minus candidate with a paired interval over queries
(`per_item_scores`). Agreement with the teacher stays as diagnostics: `fidelity`
(mean cosine to the teacher's embedding of each text) and `agreement_at_10` (the
share of the teacher's ten nearest passages the candidate also ranks in its ten).
Texts are tokenized once and cached, with the teacher's embeddings, under a key that
hashes the settings, the texts and the model.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from orchestrator.safe_files import write_atomic
from orchestrator.tasks.cache import cache_dir, settings_key
from orchestrator.tasks.base import Split, Task, model_device
from orchestrator.tasks.batches import Inputs, run_in_chunks, take
from orchestrator.tasks.losses import DistillLoss, LossSettings
from orchestrator.tasks.text.contrastive import cloze_pairs, contrastive_kd_loss
from orchestrator.tasks.text.encoder import load_encoder, tokenize, trim_padding
from orchestrator.tasks.text.labeled import LabeledSplit, inverse_cloze_sets
from orchestrator.tasks.text.relevance import RELEVANCE_METRICS, relevance_per_query
from orchestrator.tasks.text.agreement import cosine_per_text, mean_with_interval, recall_per_query

log = logging.getLogger(__name__)

DIAGNOSTICS = ("agreement_at_10", "fidelity")  # agreement with the teacher: shown beside the objective, never the bound
TEXT_METRICS = (*RELEVANCE_METRICS, *DIAGNOSTICS)
CACHE_VERSION = 2  # 2: val and test are labeled inverse-cloze sets (queries, then the passages they rank)


class EmbeddingSettings(BaseModel):
    """What fixes the data and the teacher's reference embeddings: model, metric, sequence length, split sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str
    metric: str = "ndcg_at_10"
    seq_len: int = Field(128, ge=8, description="tokens per text, padded and truncated (the serving length)")
    n_train: int | None = Field(
        None, ge=1, description="texts for distillation and calibration (never a val or test text); None: every one"
    )
    n_val_passages: int = Field(2000, ge=10, description="passages each val query is ranked against")
    n_val_queries: int = Field(500, ge=2, description="val queries, each with its one relevant passage")
    n_test_passages: int = Field(2000, ge=10)
    n_test_queries: int = Field(500, ge=2)
    split_seed: int = 0
    progress_queries: int | None = Field(
        None, ge=2, description="val queries judged while distilling (ASHA's signal); None: all; final figures use all"
    )

    @field_validator("metric")
    @classmethod
    def _metric_known(cls, value: str) -> str:
        if value not in TEXT_METRICS:
            raise ValueError(f"this task provides {', '.join(TEXT_METRICS)}; got {value!r}")
        return value


class EmbeddingTask(Task):
    """Compress a sentence encoder; quality is nDCG@10 (or recall@10, MRR@10) on labeled held-out retrieval."""

    name = "embedding"
    higher_is_better = True
    distill_targets_are_teacher = True  # train targets are the teacher's cached embeddings
    sequence_inputs = ("input_ids", "attention_mask")
    predict_batch_size = 64  # a transformer's activations grow with texts × length (attention: × length again)
    distill_losses = tuple(DistillLoss)  # the task's own (cosine), mse, and contrastive on its training pairs

    def __init__(self, texts: Sequence[str], labeled: dict[str, LabeledSplit] | None = None, **settings: Any) -> None:
        """`texts`: the corpus's paragraphs; `labeled`: val and test sets of your own (BEIR), else built from `texts`."""
        self.settings = EmbeddingSettings(**settings)
        self.metric = self.settings.metric
        s = self.settings
        if labeled is None:
            sets = inverse_cloze_sets(
                texts, n_queries=s.n_val_queries, n_passages=s.n_val_passages, seed=s.split_seed,
                n_test_queries=s.n_test_queries, n_test_passages=s.n_test_passages,
            )  # fmt: skip
            labeled, pool = {"val": sets.val, "test": sets.test}, sets.train
        else:
            held_out = {t for split in labeled.values() for t in split.texts()}
            pool = tuple(t for t in dict.fromkeys(" ".join(t.split()) for t in texts) if t not in held_out)
        if s.n_train is not None and len(pool) < s.n_train:
            raise ValueError(f"n_train: {s.n_train} training texts asked for; the corpus has {len(pool)} outside val and test")
        self.labeled: dict[str, LabeledSplit] = labeled
        self.train_texts: tuple[str, ...] = tuple(pool[: s.n_train])  # all of it where n_train is None
        self._pairs: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None
        self._teacher: nn.Module | None = None
        self.tokenizer: Any = None
        self._data: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]] | None = None
        self._load_teacher()

    @property
    def model_folder(self) -> Path:
        """The Hugging Face folder the teacher and tokenizer come from."""
        return Path(self.settings.model_path).expanduser()

    @property
    def label(self) -> str:
        """The model's folder name: what the user compresses."""
        return self.model_folder.resolve().name

    def _load_teacher(self) -> None:
        self._teacher, self.tokenizer = load_encoder(self.model_folder, self.settings.seq_len)

    def teacher(self) -> nn.Module:
        """The pretrained encoder with mean pooling, in eval mode on the CPU."""
        if self._teacher is None:
            self._load_teacher()
        return self._teacher

    def n_queries(self, split: Split) -> int:
        """Queries at the head of a val or test split; the rest are its passages."""
        return len(self.labeled[split].queries)

    def data(self, split: Split) -> tuple[Inputs, torch.Tensor]:
        """Token ids and masks (N, seq_len) and the teacher's embeddings; val and test are queries, then passages."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of ('train', 'val', 'test'), got {split!r}")
        if self._data is None:
            self._data = self._load_or_build()
        return self._data[split]

    def texts(self, split: Split) -> tuple[str, ...]:
        """The raw texts of a split, in the order of `data(split)`."""
        return self.train_texts if split == "train" else self.labeled[split].texts()

    def cache_path(self) -> Path:
        """Cache file of the tokenized splits and teacher embeddings; its name hashes all that fixes them."""
        digest = hashlib.sha256()
        for split in ("train", "val", "test"):
            for text in self.texts(split):
                digest.update(text.encode() + b"\0")
        key = settings_key(
            {
                **self.settings.model_dump(exclude={"model_path", "metric", "progress_queries"}),
                "texts": digest.hexdigest(),
                "model": _folder_digest(self.model_folder),
                "cache_version": CACHE_VERSION,
            }
        )
        return cache_dir() / "text" / f"{self.name}-{key}.safetensors"

    def _load_or_build(self) -> dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]]:
        from safetensors.torch import load_file, save

        path = self.cache_path()
        if path.is_file():
            try:
                flat = load_file(path)
                return {
                    split: ({n: flat[f"{split}.{n}"] for n in ("input_ids", "attention_mask")}, flat[f"{split}.teacher"])
                    for split in ("train", "val", "test")
                }
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                log.warning("rebuilding the text cache %s: %s", path, exc)
        built = {}
        for split in ("train", "val", "test"):
            inputs = tokenize(self.tokenizer, self.texts(split), self.settings.seq_len)
            built[split] = (inputs, self.predict(self.teacher(), inputs))
        path.parent.mkdir(parents=True, exist_ok=True)
        flat = {f"{split}.{n}": t.contiguous() for split, (inputs, _) in built.items() for n, t in inputs.items()}
        flat.update({f"{split}.teacher": emb.contiguous() for split, (_, emb) in built.items()})
        write_atomic(path, save(flat))
        return built

    @torch.inference_mode()
    def predict(self, model: nn.Module, inputs: Inputs, batch_size: int | None = None) -> torch.Tensor:
        """Embeddings, `batch_size` (default `predict_batch_size`) texts at a time, batched by similar length with
        unused padding dropped: the same outputs, less work."""
        lengths = inputs["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths, descending=True, stable=True)
        out = run_in_chunks(
            model, take(inputs, order), batch_size or self.predict_batch_size, device=model_device(model), prepare=trim_padding
        )
        result = torch.empty_like(out)
        result[order] = out
        return result

    def pair_batches(self, batch_size: int, seed: int = 0) -> Iterator[tuple[Inputs, torch.Tensor]]:
        """Endless batches of (query, passage) training pairs cut as the labeled set is (a paragraph's first sentence,
        the rest of it), from training text only: `batch_size` queries then their passages, with the teacher's
        embeddings as targets. The other passages of a batch are each query's negatives (contrastive loss)."""
        inputs, targets = self._training_pairs()
        n = len(targets) // 2
        if not 2 <= batch_size <= n:
            raise ValueError(f"batch_size must be between 2 and the {n} training pairs, got {batch_size}")
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                rows = torch.cat([order[start : start + batch_size], n + order[start : start + batch_size]])
                yield take(inputs, rows), targets[rows]

    def _training_pairs(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """All training pairs, tokenized (queries, then passages in the same order) with the teacher's embeddings;
        cached beside the splits under the same key."""
        from safetensors.torch import load_file, save

        if self._pairs is not None:
            return self._pairs
        path = self.cache_path().with_suffix(".pairs.safetensors")
        if path.is_file():
            try:
                flat = load_file(path)
                self._pairs = ({n: flat[n] for n in ("input_ids", "attention_mask")}, flat["teacher"])
                return self._pairs
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                log.warning("rebuilding the training-pairs cache %s: %s", path, exc)
        queries, passages = cloze_pairs(self.train_texts)
        if len(queries) < 2:
            raise ValueError("kd_loss contrastive: fewer than two training texts have a second sentence to pair with")
        inputs = tokenize(self.tokenizer, [*queries, *passages], self.settings.seq_len)
        self._pairs = (inputs, self.predict(self.teacher(), inputs))
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, save({**{n: t.contiguous() for n, t in inputs.items()}, "teacher": self._pairs[1].contiguous()}))
        return self._pairs

    def compact(self, inputs: Inputs) -> Inputs:
        """Drop padding columns no text in the batch uses: distillation's cost follows the real lengths."""
        return trim_padding(inputs)

    def quality_of(self, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> tuple[float, float, float]:
        """The metric's mean over queries (texts, for fidelity) with a seeded bootstrap 95% interval over them."""
        return mean_with_interval(self.per_item_scores(outputs, targets, split))

    def per_item_scores(self, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> torch.Tensor:
        """The metric of each query (each text, for fidelity), in a fixed order: what the paired drop pairs."""
        return self.metric_per_item(self.metric, outputs, targets, split)

    def metric_per_item(self, metric: str, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> torch.Tensor:
        """Per-item scores of any metric this task provides, on a split's outputs and targets (teacher embeddings)."""
        return _per_item(metric, outputs, targets, self.n_queries(split), self.labeled[split].qrels)

    def progress_subset(self) -> tuple[torch.Tensor, tuple[dict[int, int], ...]]:
        """The fixed val subset judged while distilling: rows of `data('val')` and the subset's own labels.

        The first `progress_queries` queries (val's order is already a seeded shuffle), their relevant passages, and
        distractors in the same proportion to queries as in all of val, so the subset is as hard per query.
        """
        split = self.labeled["val"]
        n_queries, k = len(split.queries), min(self.settings.progress_queries or len(split.queries), len(split.queries))
        relevant = sorted({p for labels in split.qrels[:k] for p in labels})
        wanted = max(len(relevant), round(len(split.passages) * k / n_queries))
        others = [p for p in range(len(split.passages)) if p not in set(relevant)][: wanted - len(relevant)]
        kept = sorted(relevant + others)
        position = {p: i for i, p in enumerate(kept)}
        qrels = tuple({position[p]: g for p, g in labels.items() if p in position} for labels in split.qrels[:k])
        rows = torch.tensor(list(range(k)) + [n_queries + p for p in kept])
        return rows, qrels

    def evaluate_progress(self, model: nn.Module) -> float:
        """The metric on the fixed val subset (`progress_queries`), or on all of val where none is set."""
        if self.settings.progress_queries is None or self.settings.progress_queries >= self.n_queries("val"):
            return super().evaluate_progress(model)
        rows, qrels = self.progress_subset()
        inputs, targets = self.data("val")
        was_training = model.training
        outputs = self.predict(model.eval(), take(inputs, rows))
        model.train(was_training)
        return float(_per_item(self.metric, outputs, targets[rows], len(qrels), qrels).mean())

    def diagnostics_of(self, outputs: torch.Tensor, targets: torch.Tensor, split: Split) -> dict[str, float]:
        """Agreement with the teacher (`agreement_at_10`, `fidelity`) and the labeled metrics not chosen as quality."""
        names = [m for m in TEXT_METRICS if m != self.metric]
        return {name: float(self.metric_per_item(name, outputs, targets, split).mean()) for name in names}

    def save_preprocessor(self, folder: Path) -> dict[str, Any]:
        """The tokenizer's files, for an export that embeds raw text exactly as this task tokenized it."""
        self.tokenizer.save_pretrained(str(folder))
        return {"max_length": self.settings.seq_len, "input_names": list(self.sequence_inputs)}

    def distill_loss(
        self, student_out: torch.Tensor, teacher_out: torch.Tensor, targets: torch.Tensor, settings: LossSettings
    ) -> torch.Tensor:
        """Pull the student's embeddings onto the teacher's: 1 − cosine (default) or squared distance (`mse`); or,
        on a pair batch (`contrastive`), rank each query's own passage first among the batch's, plus 1 − cosine.

        The embeddings are L2-normalised, so `mse` is 2 × (1 − cosine): under Adam, which is blind to a loss's
        scale, it takes the same steps as `cosine` (bench/minilm.py measured the same nDCG@10 to five digits)."""
        if settings.loss is DistillLoss.CONTRASTIVE:
            n = len(student_out) // 2
            return contrastive_kd_loss(student_out[:n], student_out[n:], teacher_out[:n], teacher_out[n:])
        if settings.loss is DistillLoss.MSE:
            return F.mse_loss(student_out, teacher_out, reduction="sum") / len(student_out)
        return (1.0 - F.cosine_similarity(student_out, teacher_out, dim=-1)).mean()


def _per_item(metric: str, outputs: torch.Tensor, targets: torch.Tensor, n: int, qrels) -> torch.Tensor:
    """Per-item scores of `metric` for embeddings of n queries then their passages, against labels and the teacher's."""
    if metric == "fidelity":
        return cosine_per_text(outputs, targets)
    if metric == "agreement_at_10":
        return recall_per_query(outputs[:n], outputs[n:], targets[:n], targets[n:], k=10)
    return relevance_per_query(metric, outputs[:n], outputs[n:], qrels)


def _folder_digest(folder: Path) -> str:
    """A hash of a model folder's config, tokenizer and weights files (names, sizes and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
