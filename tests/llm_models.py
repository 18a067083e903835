"""Tiny causal-LM folders for tests: a random Llama (the SmolLM2 layout, in miniature) and a byte-level BPE tokenizer
trained in the test on a little text, saved as a Hugging Face folder that AutoModelForCausalLM and AutoTokenizer load.
Builds in about a second; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

TEXT = (
    "The quick brown fox jumps over the lazy dog. A function returns a value; a generator yields values. "
    "Python reads the source file, compiles it to bytecode and runs it. Lists are mutable, tuples are not. "
) * 40


def tiny_tokenizer(vocab_size: int = 300):
    """A byte-level BPE tokenizer trained on TEXT, wrapped as a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator([TEXT], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def tiny_llm_folder(folder: Path, layers: int = 4, seed: int = 0, **overrides) -> Path:
    """A tiny random Llama with its tokenizer, saved as a Hugging Face folder; returns the folder."""
    from orchestrator.tasks.llm.model import tiny_llama

    tokenizer = tiny_tokenizer()
    model = tiny_llama(vocab_size=len(tokenizer), layers=layers, seed=seed, **overrides)
    folder.mkdir(parents=True, exist_ok=True)
    model.hf.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def varied_text(sentences: int, seed: int = 0) -> str:
    """Sentences that never repeat (seeded), so no two windows of it are the same text."""
    import random

    rng = random.Random(seed)
    subjects = ["The parser", "A generator", "Each list", "The interpreter", "A tuple", "The compiler", "Every module"]
    verbs = ["reads", "returns", "yields", "compiles", "holds", "skips", "checks"]
    objects = ["the source file", "a value", "bytecode", "every line", "the next token", "an index", "a name"]
    return " ".join(
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} number {i}." for i in range(sentences)
    )


def write_text(path: Path, repeats: int = 1) -> Path:
    """Non-repeating sentences as a UTF-8 file: about 40 windows of 32 tokens per repeat."""
    path.write_text(varied_text(200 * repeats), encoding="utf-8")
    return path
