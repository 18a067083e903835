"""A decoder LLM as a Task: a local causal LM (folder or GGUF file) judged by perplexity on held-out text windows.

Quality is `log_perplexity`: the mean over windows of each window's mean negative log-likelihood per token, in
nats (lower is better; see orchestrator/tasks/llm/perplexity.py for the exact definition). Its per-window scores
give the paired interval of a candidate's drop against the teacher, and the bound is set in perplexity terms:
`objective.max_perplexity_increase` 0.05 (+5%) is a drop of ln(1.05) = 0.0488 nats per token. Diagnostics per
trial: perplexity itself, KL(teacher ‖ candidate) per token over the teacher's top-k tokens, and top-1 next-token
agreement with the teacher; never the bound.

The teacher's top-k next-token distribution is computed once per split and kept on disk (one file per split, in
the cache, keyed by the model file, the text, the windows and k): the val and test files serve the diagnostics,
the distillation file is the target of logit distillation, so distilling never runs the teacher.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from orchestrator.errors import InputError
from orchestrator.safe_files import read_text
from orchestrator.tasks.base import Evaluation, Quality, Split, Task
from orchestrator.tasks.batches import Inputs
from orchestrator.tasks.cache import cache_dir, settings_key
from orchestrator.tasks.llm.loading import (
    ModelSource,
    architecture_of,
    load_causal_lm,
    load_tokenizer,
    source_of,
)
from orchestrator.tasks.llm.model import LLAMA_FAMILY, CausalLM
from orchestrator.tasks.llm.perplexity import logit_kd_loss, score_windows, teacher_top_k
from orchestrator.tasks.llm.windows import WindowSplits, cut_windows, split_windows
from orchestrator.tasks.losses import LossSettings
from orchestrator.tasks.metrics import bootstrap_interval

log = logging.getLogger(__name__)

METRIC = "log_perplexity"
MAX_TEXT_BYTES = 256 * 1024 * 1024
CACHE_VERSION = 1


def perplexity_bound(max_perplexity_increase: float) -> float:
    """The drop in log-perplexity (nats per token) that a relative perplexity increase allows: ln(1 + increase)."""
    return math.log1p(max_perplexity_increase)


def perplexity_increase(log_perplexity_drop: float) -> float:
    """A drop in log-perplexity as a relative perplexity increase: exp(drop) − 1 (0.0488 nats → +5.0%)."""
    return math.expm1(log_perplexity_drop)


class CausalLMTask(Task):
    """A Llama-family causal LM (or any AutoModelForCausalLM, without the pruning knobs) and a text to judge it on."""

    name = "causal_lm"
    metric = METRIC
    higher_is_better = False
    distill_targets_are_teacher = True  # train targets are the teacher's cached top-k distribution
    predict_batch_size = 4  # windows scored at once: 4 × 256 tokens × a 49k vocabulary is 200 MB of logits
    generates = True  # measured and priced in tokens (prefill, decode), served with generate()

    def __init__(
        self,
        model_path: str,
        text_file: str | None = None,
        window_tokens: int = 256,
        train_window_tokens: int = 128,
        n_val: int = 32,
        n_test: int = 64,
        n_train: int | None = 256,
        top_k: int = 64,
        seed: int = 0,
        field: str = "task.args.model_path",
    ) -> None:
        for name, value, low in (("window_tokens", window_tokens, 8), ("n_val", n_val, 2), ("n_test", n_test, 2), ("top_k", top_k, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be a whole number of at least {low}, got {value!r}")
        if not isinstance(train_window_tokens, int) or train_window_tokens < 8 or window_tokens % train_window_tokens:
            raise ValueError(
                f"train_window_tokens must divide window_tokens ({window_tokens}) and be at least 8, got {train_window_tokens!r}"
            )
        if n_train is not None and (not isinstance(n_train, int) or n_train < 1):
            raise ValueError(f"n_train must be a whole number of at least 1 (or null: every remaining window), got {n_train!r}")
        self.source: ModelSource = source_of(model_path, field)
        self.model_type, self.architectures = architecture_of(self.source, field)
        self.window_tokens, self.train_window_tokens = window_tokens, train_window_tokens
        self.top_k, self.seed = top_k, seed
        self.text_file = text_file
        self._tokenizer = load_tokenizer(self.source, field)
        text = self._read_text(text_file)
        self.text_digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        ids = torch.tensor(self._tokenizer(text, add_special_tokens=False)["input_ids"], dtype=torch.long)
        source = text_file or "the Python documentation corpus"
        splits = split_windows(cut_windows(ids, window_tokens), n_val, n_test, n_train, seed, source)
        # Distillation windows are cut shorter (halves, quarters) from their own windows: still disjoint from val and
        # test, and a training step costs in proportion to its tokens.
        train = splits.train.reshape(-1, train_window_tokens)
        self._splits = WindowSplits(train=train, val=splits.val, test=splits.test)
        self._teacher: CausalLM | None = None
        self._packed: dict[str, torch.Tensor] = {}

    @staticmethod
    def _read_text(text_file: str | None) -> str:
        if text_file is None:
            from orchestrator.tasks.text.corpus import paragraphs

            return "\n\n".join(paragraphs())
        path = Path(text_file)
        if not path.is_file():
            raise InputError(f"task.args.text_file: {path}: no such file; expected a UTF-8 text file")
        return read_text(path, MAX_TEXT_BYTES, what=f"task.args.text_file: {path}", allow_symlink=True)

    # --- the contract ---------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """The model as its file or folder names it."""
        return Path(self.source.gguf_file).stem if self.source.gguf_file else self.source.folder.name

    @property
    def prunable(self) -> bool:
        """Whether the decoder pruning table knows this architecture."""
        return self.model_type in LLAMA_FAMILY

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer."""
        return self._tokenizer

    def teacher(self) -> CausalLM:
        """The model as given, float32 (a GGUF file dequantized), in eval mode on the CPU; loaded once."""
        if self._teacher is None:
            self._teacher = load_causal_lm(self.source, "task.args.model_path")
        return self._teacher

    def windows(self, split: Split) -> torch.Tensor:
        """Token ids of one split's windows [windows, tokens]."""
        return self._splits.of(split)

    def data(self, split: Split) -> tuple[Inputs, torch.Tensor]:
        """Token ids of the split's windows, and the teacher's packed top-k distribution over them (cached)."""
        return self.windows(split), self.teacher_targets(split)

    def example_batch(self, batch_size: int) -> Inputs:
        """`batch_size` val windows (repeated as needed)."""
        ids = self.windows("val")
        return ids.repeat((batch_size + len(ids) - 1) // len(ids), 1)[:batch_size]

    def calibration_batches(self, n_batches: int = 4, batch_size: int = 4) -> list[Inputs]:
        """Distillation windows (token ids) for calibration: block influence, data-aware quantization."""
        ids = self.windows("train")
        n = min(n_batches * batch_size, len(ids))
        return [ids[i : i + batch_size] for i in range(0, n, batch_size)]

    def evaluate_items(self, model: nn.Module, split: Split) -> Evaluation:
        """log_perplexity with a bootstrap interval over windows, the per-window scores, and the diagnostics."""
        ids, packed = self.data(split)
        was_training = model.training
        model.eval()
        scores = score_windows(model, ids, self.predict_batch_size, packed)
        model.train(was_training)
        items = scores.nll
        value = float(items.mean())
        low, high = bootstrap_interval(lambda v, _: float(v.mean()), items, items, seed=self.seed)
        quality = Quality(
            metric=METRIC, value=value, higher_is_better=False, split=split, n_examples=len(items),
            ci95_low=low, ci95_high=high,
        )  # fmt: skip
        diagnostics = {"perplexity": math.exp(value)}
        if scores.kl is not None and scores.top1_agreement is not None:
            diagnostics["kl_per_token"] = float(scores.kl.mean())
            diagnostics["top1_agreement"] = float(scores.top1_agreement.mean())
        return Evaluation(quality, items, diagnostics)

    def distill_loss(
        self, student_out: torch.Tensor, teacher_out: torch.Tensor, targets: torch.Tensor, settings: LossSettings
    ) -> torch.Tensor:
        """KL with temperature toward the teacher's cached top-k distribution, plus CE on the text (logit_kd_loss)."""
        return logit_kd_loss(student_out, targets, settings.temperature, settings.alpha)

    def save_preprocessor(self, folder: Any) -> dict[str, Any]:
        """The tokenizer, beside the exported model."""
        self._tokenizer.save_pretrained(folder)
        return {"kind": "tokenizer", "window_tokens": self.window_tokens}

    # --- the teacher's cached distribution -------------------------------------------------------------

    def cache_path(self, split: Split) -> Path:
        """Where the teacher's packed top-k over one split is kept."""
        stat = self.source.path.stat()
        key = settings_key({
            "model": str(self.source.path.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns,
            "text": self.text_digest, "window": self.window_tokens, "train_window": self.train_window_tokens,
            "n": [len(self._splits.of(s)) for s in ("train", "val", "test")], "seed": self.seed, "k": self.top_k,
            "version": CACHE_VERSION,
        })  # fmt: skip
        return cache_dir() / "llm" / f"teacher-top{self.top_k}-{key}-{split}.pt"

    def teacher_targets(self, split: Split) -> torch.Tensor:
        """The teacher's packed top-k over a split, from the cache or computed once (under a lock) and cached."""
        if split in self._packed:
            return self._packed[split]
        path = self.cache_path(split)
        path.parent.mkdir(parents=True, exist_ok=True)
        packed = self._read_cached(path, split)
        if packed is None:
            with path.with_name(f".{path.name}.lock").open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                packed = self._read_cached(path, split)
                if packed is None:
                    log.info("computing the teacher's top-%d distribution over %s (%d windows), once", self.top_k, split, len(self.windows(split)))
                    packed = teacher_top_k(self.teacher(), self.windows(split), self.top_k, self.predict_batch_size)
                    partial = path.with_name(path.name + ".partial")
                    torch.save(packed, partial)
                    partial.replace(path)
        self._packed[split] = packed
        return packed

    def _read_cached(self, path: Path, split: Split) -> torch.Tensor | None:
        if not path.is_file():
            return None
        try:
            packed = torch.load(path, weights_only=True)
        except Exception as exc:  # a damaged cache is rebuilt, never trusted
            log.warning("rebuilding %s: %s", path, exc)
            return None
        expected = (*self.windows(split).shape, 2 * self.top_k + 1)
        if tuple(packed.shape) != expected:
            log.warning("rebuilding %s: shape %s, expected %s", path, tuple(packed.shape), expected)
            return None
        return packed

    def cache_bytes(self) -> dict[str, int]:
        """Bytes of each split's cached teacher distribution on disk (0: not built yet)."""
        return {s: (p.stat().st_size if (p := self.cache_path(s)).is_file() else 0) for s in ("train", "val", "test")}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_packed"] = {}  # reread from disk in each trial process rather than pickled through Ray's object store
        return state
