"""A tiny encoder of no known family: plain nn.Linear projections under names no table knows.

Its attention reshapes by a head-count attribute (`heads`), registers its output projection before
q/k/v (so only the order of calls tells them apart) and can fuse q/k/v into one projection; its
FFN can be gated (SwiGLU-style, [input | gate] halves). `heads_from_config=True` makes the
attention read the shared config's head count instead, which no slicing can keep true.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig


class Mixer(nn.Module):
    def __init__(self, config: PretrainedConfig, fused: bool, heads_from_config: bool) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.config = config
        self.heads = config.num_attention_heads
        self.inner = hidden
        self.heads_from_config = heads_from_config
        self.proj = nn.Linear(hidden, hidden)
        self.fused = fused
        if fused:
            self.to_qkv = nn.Linear(hidden, 3 * hidden)
        else:
            self.to_q, self.to_k, self.to_v = (nn.Linear(hidden, hidden) for _ in range(3))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, s, _ = x.shape
        heads = self.config.num_attention_heads if self.heads_from_config else self.heads
        if self.fused:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        q, k, v = (t.view(b, s, heads, -1).transpose(1, 2) for t in (q, k, v))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(context.transpose(1, 2).reshape(b, s, self.inner))


class Block(nn.Module):
    def __init__(self, config: PretrainedConfig, fused: bool, gated: bool, heads_from_config: bool) -> None:
        super().__init__()
        hidden, inter = config.hidden_size, config.intermediate_size
        self.mixer = Mixer(config, fused, heads_from_config)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.gated = gated
        self.up = nn.Linear(hidden, (2 if gated else 1) * inter)
        self.down = nn.Linear(inter, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(x + self.mixer(x, mask))
        if self.gated:
            a, g = self.up(x).chunk(2, dim=-1)
            h = F.silu(a) * g
        else:
            h = F.gelu(self.up(x))
        return self.norm2(x + self.down(h))


class TinyEncoder(nn.Module):
    def __init__(
        self, fused: bool = False, gated: bool = False, heads_from_config: bool = False, layers: int = 4
    ) -> None:
        super().__init__()
        self.config = PretrainedConfig(
            hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=layers
        )
        self.embed = nn.Embedding(100, 32)
        self.blocks = nn.ModuleList(Block(self.config, fused, gated, heads_from_config) for _ in range(layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        x = self.embed(input_ids)
        mask = attention_mask[:, None, None, :].bool()
        for block in self.blocks:
            x = block(x, mask)
        return SimpleNamespace(last_hidden_state=x)
