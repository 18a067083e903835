"""A Hugging Face encoder folder as a sentence embedder: mean pooling over the mask, then L2 normalisation.

This is sentence-transformers' recipe for all-MiniLM-L6-v2 and its kind, written as one
plain `nn.Module` whose forward takes `input_ids` and `attention_mask`, so pruning,
quantization, torch.export and ONNX all see the whole model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.noise import drop_known_noise
from orchestrator.errors import InputError

INSTALL_HINT = "pip install 'hedgerow[transformers]'"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


class MissingExtra(InputError):
    """An optional dependency is not installed; the message gives the pip command."""


def require_transformers() -> Any:
    """The `transformers` module, or a MissingExtra naming the extra to install."""
    if importlib.util.find_spec("transformers") is None:
        raise MissingExtra(f"text tasks need the 'transformers' extra, which is not installed: run {INSTALL_HINT}")
    import transformers

    return transformers


class SentenceEncoder(nn.Module):
    """Token embeddings from a Hugging Face encoder, mean-pooled over real tokens and L2-normalised."""

    def __init__(self, encoder: nn.Module, normalize: bool = True) -> None:
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the [CLS] pooler head: unused by mean pooling, so neither stored nor counted
        self.encoder = encoder
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2.0, dim=-1) if self.normalize else pooled


def check_model_folder(folder: Path, field: str) -> None:
    """A model folder must hold a config, weights and a tokenizer; say which is missing."""
    if not folder.is_dir():
        raise InputError(f"{field}: {folder} is not a folder holding a Hugging Face model (config.json, weights, tokenizer)")
    if not (folder / "config.json").is_file():
        raise InputError(f"{field}: {folder} has no config.json; expected a folder written by save_pretrained()")
    if not any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")) and not any(
        folder.glob("model-*.safetensors")
    ):
        raise InputError(f"{field}: {folder} has no weights (model.safetensors or pytorch_model.bin)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise InputError(
            f"{field}: {folder} has no tokenizer (one of {', '.join(TOKENIZER_FILES)}); "
            "save it beside the model with tokenizer.save_pretrained(folder)"
        )


def max_positions(config: Any) -> int | None:
    """The longest input the model's position embeddings allow (None when it has no such limit)."""
    value = getattr(config, "max_position_embeddings", None)
    # RoBERTa-style models reserve two positions for the padding offset.
    offset = 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") else 0
    return int(value) - offset if value else None


def checked_config(folder: Path, seq_len: int, field: str = "task.args.model_path") -> Any:
    """A local model folder's config, once the folder holds what loading needs and `seq_len` fits its positions."""
    transformers = require_transformers()
    check_model_folder(folder, field)
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    limit = max_positions(config)
    if limit is not None and seq_len > limit:
        raise InputError(f"task.args.seq_len: {seq_len} tokens is above the model's maximum of {limit} positions ({folder})")
    return config


def is_sequence_classifier(config: Any) -> bool:
    """Whether config.json names a …ForSequenceClassification architecture."""
    return any(a.endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or [])


def load_pretrained(folder: Path, auto_class: str) -> tuple[nn.Module, Any]:
    """A local folder's model, by a transformers Auto class name (fp32, eval mode, CPU), and its tokenizer: loaded
    quietly with local_files_only, so never from a hub."""
    transformers = require_transformers()
    with quiet_loading():
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = getattr(transformers, auto_class).from_pretrained(folder, local_files_only=True)
    return model.float().eval(), tokenizer


def load_encoder(folder: str | Path, seq_len: int, field: str = "task.args.model_path") -> tuple[SentenceEncoder, Any]:
    """The encoder (eval mode, fp32, CPU) and its tokenizer from a local folder: no network, ever."""
    folder = Path(folder).expanduser()
    config = checked_config(folder, seq_len, field)
    if is_sequence_classifier(config):
        raise InputError(
            f"{field}: {folder} is a sequence classifier ({', '.join(config.architectures)}); this task embeds sentences, "
            "so use examples.hf_classifier_task for a classifier"
        )
    model, tokenizer = load_pretrained(folder, "AutoModel")
    return SentenceEncoder(model).eval(), tokenizer


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' progress bars off and its logs at warnings and above while a model loads: Hedgerow's output is its own."""
    from transformers.utils import logging as hf_logging

    drop_known_noise()  # transformers imports torchao while it loads
    bars, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity(max(verbosity, hf_logging.WARNING))
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def tokenize(tokenizer: Any, texts: list[str] | tuple[str, ...], seq_len: int) -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` (int64), padded and truncated to exactly `seq_len` tokens."""
    encoded = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"
    )
    return {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}


def trim_padding(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the padding columns no example in the batch uses: the outputs are the same, the work smaller."""
    used = int(inputs["attention_mask"].sum(dim=1).max())
    return {name: tensor[:, : max(used, 1)] for name, tensor in inputs.items()}
