"""A tiny, randomly initialised BERT and its WordPiece tokenizer, saved as a user's model folder (no network)."""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import torch

HIDDEN, LAYERS, HEADS, FFN, MAX_POSITIONS = 32, 2, 4, 64, 64


def save_tiny_bert(root: Path, seed: int = 0) -> Path:
    """Write config, weights and tokenizer files to root/my-encoder with save_pretrained; return that folder."""
    import transformers

    from orchestrator.tasks.text.corpus import paragraphs

    counts = Counter(w for p in paragraphs() for w in re.findall(r"[a-z]{2,}", p.lower()))
    characters = string.ascii_lowercase + string.digits
    vocab = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
        *characters, *string.punctuation, *("##" + c for c in characters),  # every word has a spelling
        *(w for w, _ in counts.most_common(400)),
    ]  # fmt: skip
    vocab = list(dict.fromkeys(vocab))
    root.mkdir(parents=True, exist_ok=True)
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    # Positional: transformers 4 calls it vocab_file, 5 calls it vocab (and ignores vocab_file=, silently).
    tokenizer = transformers.BertTokenizer(str(vocab_file))
    assert len(tokenizer) == len(vocab)
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        max_position_embeddings=MAX_POSITIONS,
    )
    folder = root / "my-encoder"
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
