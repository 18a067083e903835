"""A Hugging Face causal LM behind the Task contract: token ids in, next-token logits out.

`CausalLM` is one plain `nn.Module` around an `AutoModelForCausalLM` (Llama family: Llama, SmolLM2,
TinyLlama, Qwen2, Mistral), so pruning, quantization and distillation see every layer, and
`self.hf` stays a model that `save_pretrained` writes and `AutoModelForCausalLM` loads unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Architectures whose decoder layers the pruning table knows (model_type in config.json).
LLAMA_FAMILY = ("llama", "qwen2", "mistral")


class CausalLM(nn.Module):
    """A causal LM whose forward returns float logits [batch, tokens, vocabulary], with no KV cache."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model
        self.train(hf_model.training)  # the wrapper in the mode of the model it wraps

    @property
    def config(self) -> Any:
        """The Hugging Face config (kept in step with every structural change)."""
        return self.hf.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        out = self.hf(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.logits.float()

    def decoder_layers(self) -> nn.ModuleList:
        """The decoder blocks, in order."""
        return self.hf.model.layers

    def kv_bytes_per_token(self) -> int:
        """Bytes the KV cache holds per token of context: 2 (key, value) × layers × KV heads × head size × dtype."""
        cfg = self.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        dtype = next(self.hf.parameters()).dtype
        element = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
        return 2 * cfg.num_hidden_layers * kv_heads * head_dim * element


def tiny_llama(
    vocab_size: int = 256,
    hidden_size: int = 64,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    seed: int = 0,
    **overrides: Any,
) -> CausalLM:
    """A small random Llama (grouped-query attention, gated FFN, tied embeddings) built in well under a second.

    For tests and examples: the same layout as SmolLM2, so every LLM code path runs on it.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        **overrides,
    )
    return CausalLM(LlamaForCausalLM(config).eval())
