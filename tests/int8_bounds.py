"""How far an int8 program may stray from its float model, derived from int8's step sizes rather than picked on one CPU.

A correct int8 Linear rounds each weight to half a step of its channel's range (7-bit weights: 1/63 of the
largest) and each activation to half a step of the batch's range (uint8: 1/255), so its output moves by at
most about ½/63 + ½/255 ≈ 1% of the output's own scale (torch's 8-bit weights with 7-bit activations:
½/127 + ½/127, less); `n_layers` quantized layers in a row compound to
`n_layers` %. A class can change only where the float model's top-2 margin is within twice that error of the
item's logit scale: those are the items int8 may reclassify, and no others. A kernel that saturates (u8s8 on x86
without VNNI, full-range weights) moves logits by as much as the margins themselves and flips items outside
that set, which these bounds catch.
"""

from __future__ import annotations

import torch

INT8_STEP_ERROR = 0.5 / 63 + 0.5 / 255  # one quantized Linear, relative to its output's scale


def items_int8_may_flip(float_logits: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Mask of the items whose float top-2 margin is within int8's rounding error of their logit scale."""
    top2 = float_logits.float().topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    scale = float_logits.float().abs().amax(dim=1)
    return margin <= 2 * n_layers * INT8_STEP_ERROR * scale


def assert_int8_classifies_like_float(int8_logits: torch.Tensor, float_logits: torch.Tensor, labels: torch.Tensor,
                                      n_layers: int) -> None:  # fmt: skip
    """int8 changes the class only of near-tie items, and its accuracy is at most those items below the float model's."""
    fragile = items_int8_may_flip(float_logits, n_layers)
    changed = int8_logits.argmax(1) != float_logits.argmax(1)
    assert not bool((changed & ~fragile).any()), (
        f"int8 changed the class of {int((changed & ~fragile).sum())} item(s) whose float margin exceeds int8's "
        f"rounding error ({int(fragile.sum())} of {len(labels)} are near ties)"
    )
    int8_correct = int((int8_logits.argmax(1) == labels).sum())
    float_correct = int((float_logits.argmax(1) == labels).sum())
    assert int8_correct >= float_correct - int(fragile.sum()), (int8_correct, float_correct, int(fragile.sum()))
