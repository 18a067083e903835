"""Greedy text generation from an exported decoder LLM: prompts checked against the export's limits, then decoded.

Decoding is greedy (the most likely token at every step, so the same prompt always gives the same text) with a
Hugging Face `DynamicCache` (each step feeds one token through the cached keys and values), as the search measured
it (orchestrator/measure/generation.py). Prompts run one at a time: a prompt's text never depends on the other
prompts of a call or of a Serve batch (left padding would change the float rounding of a batch's rows, and so,
rarely, a greedy choice). A request stops at its `max_new_tokens`, or earlier at an end-of-sequence token.

Every prompt of a call is checked before any is decoded: a list of strings, each within the prompt limit (tokens)
and `max_new_tokens` between 1 and the export's limit; anything else is an InputError naming the limit.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from orchestrator.errors import InputError
from orchestrator.measure.generation import decode_step, prefill

MAX_PROMPT_CHARS = 1_000_000  # a bound on the work before tokenizing; the token limit is the real check
MAX_PROMPTS_PER_CALL = 256


def check_max_new_tokens(max_new_tokens: Any, limit: int) -> int:
    """`max_new_tokens` as a whole number from 1 to `limit`, else InputError naming the limit."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise InputError(f"max_new_tokens: expected a whole number from 1 to {limit}, got {max_new_tokens!r}")
    if not 1 <= max_new_tokens <= limit:
        raise InputError(
            f"max_new_tokens: {max_new_tokens} is outside 1..{limit} (this export's max_new_tokens_limit is {limit})"
        )
    return max_new_tokens


def check_prompts(prompts: Any) -> list[str]:
    """A non-empty list of strings (a bare string is refused: it would read as one prompt per character)."""
    if isinstance(prompts, str):
        raise InputError("prompts: expected a list of strings, got one string; pass [prompt]")
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise InputError(f"prompts: expected a non-empty list of strings, got {type(prompts).__name__}")
    if len(prompts) > MAX_PROMPTS_PER_CALL:
        raise InputError(f"prompts: {len(prompts)} prompts in one call; at most {MAX_PROMPTS_PER_CALL}")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise InputError(f"prompts[{i}]: expected a string, got {type(prompt).__name__}")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"prompts[{i}]: {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,}")
    return list(prompts)


def encode_prompts(tokenizer: Any, prompts: Sequence[str], prompt_tokens_limit: int, add_special_tokens: bool) -> list[list[int]]:
    """Each prompt's token ids, every one within the prompt limit (InputError naming the prompt and the limit)."""
    encoded = []
    for i, prompt in enumerate(prompts):
        ids = list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
        if not ids:
            raise InputError(f"prompts[{i}]: the prompt is empty (no tokens); give at least one token of text")
        if len(ids) > prompt_tokens_limit:
            raise InputError(
                f"prompts[{i}]: {len(ids)} tokens, more than this export's prompt limit of {prompt_tokens_limit} tokens "
                "(the context length less max_new_tokens_limit); shorten the prompt"
            )
        encoded.append(ids)
    return encoded


@torch.inference_mode()
def greedy_ids(hf: nn.Module, prompt_ids: Sequence[int], max_new_tokens: int, eos_ids: Sequence[int] = ()) -> list[int]:
    """The greedy continuation of one prompt (token ids, the end-of-sequence token included where it came), decoded
    with a KV cache: one prefill of the prompt, then one cached step per new token."""
    device = next(hf.parameters()).device
    stop = set(eos_ids)
    cache, token = prefill(hf, torch.tensor([list(prompt_ids)], device=device))
    new: list[int] = []
    while True:
        new.append(int(token[0]))
        if new[-1] in stop or len(new) >= max_new_tokens:
            return new
        token = decode_step(hf, cache, token)


def eos_token_ids(hf: nn.Module, tokenizer: Any) -> list[int]:
    """The ids that end an answer: the generation config's, else the model config's, else the tokenizer's."""
    for source in (getattr(hf, "generation_config", None), getattr(hf, "config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            return sorted({int(v) for v in (value if isinstance(value, (list, tuple)) else [value])})
    return []
