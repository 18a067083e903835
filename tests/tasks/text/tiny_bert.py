"""A tiny, randomly initialised BERT and its WordPiece tokenizer, saved as a user's model folder (no network)."""

from __future__ import annotations

import re
import string
from collections import Counter
from pathlib import Path

import torch

HIDDEN, LAYERS, HEADS, FFN, MAX_POSITIONS = 32, 2, 4, 64, 64


def save_tiny_bert(root: Path, seed: int = 0, max_positions: int = MAX_POSITIONS, heads: int = HEADS) -> Path:
    """Write config, weights and tokenizer files to root/my-encoder with save_pretrained; return that folder."""
    import transformers

    tokenizer, config = _tokenizer_and_config(root, seed)
    config.max_position_embeddings, config.num_attention_heads = max_positions, heads
    folder = root / "my-encoder"
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_classifier(root: Path, labels: list[str], seed: int = 0) -> Path:
    """A tiny BertForSequenceClassification over `labels` (its id2label), saved with its tokenizer to root/my-classifier."""
    import transformers

    tokenizer, config = _tokenizer_and_config(root, seed)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    folder = root / "my-classifier"
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _tokenizer_and_config(root: Path, seed: int) -> tuple:
    """A WordPiece tokenizer over the corpus's commonest words, and a tiny BertConfig for it (torch seeded)."""
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
    return tokenizer, config


TOPICS = {"files": "file", "threads": "thread", "sockets": "socket"}


def topic_rows(per_topic: int = 40) -> list[tuple[str, str]]:
    """(paragraph, topic) of paragraphs that name exactly one of three topics, in their first ten words: real text, learnable labels."""
    from orchestrator.tasks.text.corpus import paragraphs

    rows: dict[str, list[str]] = {topic: [] for topic in TOPICS}
    openings: set[str] = set()  # no two rows open alike: cut to a few tokens, they would be one example
    for text in paragraphs():
        words = set(re.findall(r"[a-z]+", text.lower()))
        opens = set(re.findall(r"[a-z]+", " ".join(text.lower().split()[:10])))  # in view of a few dozen tokens
        named = [topic for topic, word in TOPICS.items() if word in words]
        if len(named) != 1 or TOPICS[named[0]] not in opens:
            continue
        opening = " ".join(text.lower().split()[:6])
        if len(named) == 1 and len(rows[named[0]]) < per_topic and opening not in openings:
            openings.add(opening)
            rows[named[0]].append(text)
    assert all(len(texts) == per_topic for texts in rows.values()), {t: len(x) for t, x in rows.items()}
    return [(text, topic) for topic, texts in rows.items() for text in texts]


def save_fine_tuned_classifier(root: Path, rows: list[tuple[str, str]], steps: int = 300, seq_len: int = 64) -> Path:
    """The tiny classifier, fine-tuned on `rows` (text, label) so that it is a teacher worth compressing."""
    import transformers

    labels = sorted({label for _, label in rows})
    folder = save_tiny_classifier(root, labels)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    encoded = tokenizer([t for t, _ in rows], padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
    targets = torch.tensor([labels.index(label) for _, label in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # Decayed to zero, so training settles instead of oscillating: it fits alike on AVX-512 and AVX2 paths.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(rows), (32,), generator=generator)
        loss = model(input_ids=encoded["input_ids"][idx], attention_mask=encoded["attention_mask"][idx], labels=targets[idx]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval().save_pretrained(folder)
    return folder


FAMILIES = ("bert", "distilbert", "modernbert", "deberta")


def save_tiny_encoder(root: Path, family: str, seed: int = 0) -> Path:
    """A tiny, randomly initialised encoder of `family` (BERT, DistilBERT, ModernBERT or DeBERTa-v3), saved with the shared
    WordPiece tokenizer to root/<family>: a user's folder of each layout transformer pruning knows."""
    import transformers

    tokenizer, bert = _tokenizer_and_config(root, seed)
    sizes = {"vocab_size": bert.vocab_size, "max_position_embeddings": MAX_POSITIONS}
    if family == "bert":
        model = transformers.BertModel(bert)
    elif family == "distilbert":
        model = transformers.DistilBertModel(
            transformers.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN, pad_token_id=0, **sizes)
        )
    elif family == "modernbert":
        ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in
               (("pad_token_id", "[PAD]"), ("cls_token_id", "[CLS]"), ("sep_token_id", "[SEP]"),
                ("bos_token_id", "[CLS]"), ("eos_token_id", "[SEP]"))}  # fmt: skip
        model = transformers.ModernBertModel(
            transformers.ModernBertConfig(
                hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                local_attention=8, global_attn_every_n_layers=2, **ids, **sizes,
            )
        )  # fmt: skip
    elif family == "deberta":  # DeBERTa-v3's layout: relative positions through the shared query/key projections
        model = transformers.DebertaV2Model(
            transformers.DebertaV2Config(
                hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
                relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"], share_att_key=True,
                position_biased_input=False, norm_rel_ebd="layer_norm", pad_token_id=0, **sizes,
            )
        )  # fmt: skip
    else:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    folder = root / family
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_mpnet(root: Path, seed: int = 0) -> Path:
    """A tiny MPNet (plain Linear layers, but a per-head position bias beside them): a model no family fits."""
    import transformers

    tokenizer, bert = _tokenizer_and_config(root, seed)
    model = transformers.MPNetModel(
        transformers.MPNetConfig(
            vocab_size=bert.vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            intermediate_size=FFN, max_position_embeddings=MAX_POSITIONS + 2, pad_token_id=0,
        )
    )  # fmt: skip
    folder = root / "mpnet"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
