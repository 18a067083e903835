"""Which heads, FFN neurons and blocks of a transformer matter least: what structured pruning removes first.

Heads (key-value groups) and FFN neurons rank by the L2 norms of their weights; whole blocks by how much each
changes its input, block influence (ShortGPT), or are dropped evenly spaced.

Block influence (Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
Expect"): BI_i = 1 − mean over calibration tokens of cos(x_in, x_out), where x_in and x_out are block i's
input and output hidden states. A block whose output points where its input did (BI near 0) mostly adds
little to the residual stream, so removing it changes the model least. It is measured once, on the
unpruned model, over a few calibration batches (one forward each, hooks on every block).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from orchestrator.compress.encoder_families import EncoderFamily, family_of, needs_message
from orchestrator.tasks.batches import Inputs, run, to_device

__all__ = [
    "attention_mask_of", "block_influence", "ffn_importance", "head_importance", "layer_drop_indices",
    "least_influential",
]  # fmt: skip


def _family(layer: nn.Module) -> EncoderFamily:
    family = family_of(layer)
    if family is None:
        raise ValueError(f"transformer pruning {needs_message()}; {type(layer).__name__} is not such a layer")
    return family


def head_importance(layer: nn.Module, family: EncoderFamily | None = None) -> torch.Tensor:
    """Per-head L2 importance: summed norms of the head's query/key/value rows and attention-output columns; with
    grouped-query attention, per key-value group: its key/value rows, and its query heads' rows and output columns."""
    family = family or _family(layer)
    size, group = family.head_size_of(layer), family.group(layer)
    with torch.no_grad():
        if family.fused:
            weight = family.projections(layer)[0].weight
            blocks = weight.reshape(3, -1, size, weight.shape[1]).norm(dim=(2, 3))
            scores = blocks[0] + blocks[1] + blocks[2]
        else:
            per_head = [
                linear.weight.reshape(-1, size, linear.in_features).norm(dim=(1, 2))
                for linear in family.projections(layer)
            ]
            scores = per_head[0].reshape(-1, group).sum(dim=1) + per_head[1] + per_head[2]
        out = family.linear(layer, family.attn_out).weight
        scores = scores + out.reshape(out.shape[0], -1, size).norm(dim=(0, 2)).reshape(-1, group).sum(dim=1)
    return scores


def ffn_importance(layer: nn.Module, family: EncoderFamily | None = None) -> torch.Tensor:
    """Per-neuron L2 importance: FFN input row norms (both rows of a gated pair; the row of each input, gate and up)
    + FFN output column norm."""
    family = family or _family(layer)
    with torch.no_grad():
        scores = None
        for path in family.ffn_inputs:
            rows = family.linear(layer, path).weight.norm(dim=1)
            if family.gated:
                rows = rows[: rows.shape[0] // 2] + rows[rows.shape[0] // 2 :]
            scores = rows if scores is None else scores + rows
        return scores + family.linear(layer, family.ffn_out).weight.norm(dim=0)


def layer_drop_indices(n: int, keep: int) -> list[int]:
    """Evenly spaced positions of `keep` of `n` layers, ending at the last: ((i + 1) · n) // keep − 1.

    6 → 3 keeps [1, 3, 5] (DistilBERT-style alternate layers); 12 → 4 keeps [2, 5, 8, 11];
    keep 1 keeps only the last layer, whose output the head was trained on.
    """
    return [((i + 1) * n) // keep - 1 for i in range(keep)]


# --- block influence ----------------------------------------------------------------------------


def attention_mask_of(inputs: Inputs) -> torch.Tensor | None:
    """The real-token mask of a batch: a mapping's `attention_mask`; None (every token counts) for a tensor."""
    return inputs.get("attention_mask") if isinstance(inputs, Mapping) else None


class _LastBlockDone(Exception):
    """Raised by the last block's hook: what follows it (the final norm, the LM head) is not needed."""


def _hidden_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _hidden_out(output: Any) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]


@torch.no_grad()
def block_influence(
    model: nn.Module,
    layers: Sequence[nn.Module],
    batches: Sequence[Inputs],
    mask_of: Callable[[Inputs], torch.Tensor | None] = attention_mask_of,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """BI of each of `layers` (blocks of `model`): 1 − mean cos(block input, block output) over the real tokens of
    `batches`, run through `model` (float64 [len(layers)]); `mask_of(batch)` [b, T] says which tokens count.

    Each forward stops after the last of `layers` (the LM head of a 135M-parameter decoder is a fifth of its work)."""
    if not batches:
        raise ValueError("block influence needs at least one calibration batch")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    cos_sum = torch.zeros(len(layers), dtype=torch.float64)
    n_tokens = torch.zeros(len(layers), dtype=torch.float64)
    mask: torch.Tensor | None = None

    def hook(index: int) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            x_in, x_out = _hidden_in(args, kwargs).double(), _hidden_out(output).double()
            cos = torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1)  # [b, T]
            weight = torch.ones_like(cos) if mask is None else mask.to(cos.device, cos.dtype).reshape(cos.shape)
            cos_sum[index] += float((cos * weight).sum())
            n_tokens[index] += float(weight.sum())
            if index == len(layers) - 1:
                raise _LastBlockDone

        return record

    handles = [layer.register_forward_hook(hook(i), with_kwargs=True) for i, layer in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            mask = mask_of(batch)
            try:
                run(model, to_device(batch, device))
            except _LastBlockDone:
                pass
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if (n_tokens == 0).any():
        raise ValueError("block influence: the calibration batches hold no real token (every attention_mask is 0)")
    return 1.0 - cos_sum / n_tokens


def least_influential(scores: torch.Tensor, n_drop: int) -> list[int]:
    """Positions of the `n_drop` lowest scores, ascending; of equal scores the earlier block goes first."""
    order = torch.argsort(scores, stable=True)[:n_drop]
    return sorted(int(i) for i in order)
