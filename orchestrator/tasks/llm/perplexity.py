"""Perplexity on fixed token windows, the teacher's top-k next-token distribution, and logit distillation.

Definition (so figures compare with other tools): text is cut into non-overlapping windows of `window_tokens`
tokens (stride = window length, no BOS token added, no context carried between windows). Within a window every
token after the first is predicted from the tokens before it, so a window scores `window_tokens − 1` tokens.
A window's score is its mean negative log-likelihood per token, in nats; the split's `log_perplexity` is the mean
over windows (equal to the token-level mean, every window being the same length), and its perplexity is
exp(log_perplexity). lm-eval's `word_perplexity` divides by words, not tokens, and its rolling windows overlap:
its figures are not these.

The teacher's next-token distribution is kept as its top-k log-probabilities (over the whole vocabulary) and
their token ids, packed into one float tensor [windows, tokens, 2k + 1]: k log-probabilities, k ids (exact in
float32 below 2^24), then the next token's id (−1 at the window's last position). A 49k-token vocabulary makes
full logits 200 KB per token; top-64 keeps 0.5 KB.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from orchestrator.tasks.batches import report_progress


class WindowScores(NamedTuple):
    """Per window: mean NLL per token (nats), KL(teacher ‖ model) per token over the teacher's top-k, top-1 agreement."""

    nll: torch.Tensor
    kl: torch.Tensor | None
    top1_agreement: torch.Tensor | None


def pack_top_k(logits: torch.Tensor, ids: torch.Tensor, k: int) -> torch.Tensor:
    """The teacher's top-k log-probabilities and ids per position, and the next token: [b, T, 2k + 1] float32."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    values, indices = log_probs.topk(k, dim=-1)
    following = torch.full(ids.shape, -1, dtype=torch.float32)
    following[:, :-1] = ids[:, 1:].float()
    return torch.cat([values, indices.float(), following.unsqueeze(-1)], dim=-1)


def unpack_top_k(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-probabilities [b, T, k], ids [b, T, k] long, next token [b, T] long, −1 where none)."""
    k = (packed.shape[-1] - 1) // 2
    return packed[..., :k], packed[..., k : 2 * k].long(), packed[..., -1].long()


def nll_per_window(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per predicted token of each window, in nats."""
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1)
    token_nll = -log_probs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return token_nll.mean(dim=1).double()


def kl_and_agreement(logits: torch.Tensor, teacher_packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per window: KL(teacher ‖ model) per token over the teacher's top-k tokens (the teacher's probabilities as
    kept, not renormalised: the mass outside the top-k is left out), and the share of positions whose top-1 token is
    the teacher's."""
    teacher_lp, teacher_ids, _ = unpack_top_k(teacher_packed)
    log_probs = F.log_softmax(logits.float(), dim=-1)
    model_lp = log_probs.gather(-1, teacher_ids)
    kl = (teacher_lp.exp() * (teacher_lp - model_lp)).sum(-1).mean(dim=1)
    agree = (log_probs.argmax(-1) == teacher_ids[..., 0]).float().mean(dim=1)
    return kl.double(), agree.double()


@torch.inference_mode()
def score_windows(
    model: nn.Module, ids: torch.Tensor, chunk: int, teacher_packed: torch.Tensor | None = None
) -> WindowScores:
    """Score every window, `chunk` windows at a time on the model's device: the logits of one chunk are all that is
    ever held ([chunk, tokens, vocabulary] floats)."""
    device = next(model.parameters()).device
    nll, kl, agree = [], [], []
    total = len(ids)
    for start in range(0, total, chunk):
        batch = ids[start : start + chunk]
        logits = model(batch.to(device)).float().cpu()
        nll.append(nll_per_window(logits, batch))
        if teacher_packed is not None:
            k, a = kl_and_agreement(logits, teacher_packed[start : start + chunk])
            kl.append(k)
            agree.append(a)
        del logits
        report_progress(min(start + chunk, total), total)
    cat = lambda parts: torch.cat(parts) if parts else None  # noqa: E731
    return WindowScores(torch.cat(nll), cat(kl), cat(agree))


@torch.inference_mode()
def teacher_top_k(teacher: nn.Module, ids: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """The teacher's packed top-k (see the module docstring) for every window, `chunk` windows at a time."""
    device = next(teacher.parameters()).device
    parts = []
    for start in range(0, len(ids), chunk):
        batch = ids[start : start + chunk]
        parts.append(pack_top_k(teacher(batch.to(device)).float().cpu(), batch, k))
        report_progress(min(start + chunk, len(ids)), len(ids))
    return torch.cat(parts)


def logit_kd_loss(
    student_logits: torch.Tensor, teacher_packed: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    """alpha · T² · KL(teacher_T ‖ student_T) over the teacher's top-k + (1 − alpha) · CE on the text's next tokens.

    The teacher's top-k log-probabilities, divided by T and renormalised over the k tokens, are the soft targets; the
    student's log-probabilities at those ids come from its softmax over the whole vocabulary at temperature T.
    """
    teacher_lp, teacher_ids, following = unpack_top_k(teacher_packed.to(student_logits.device))
    soft_targets = F.softmax(teacher_lp / temperature, dim=-1)
    student_lp = F.log_softmax(student_logits / temperature, dim=-1).gather(-1, teacher_ids)
    kl = (soft_targets * (soft_targets.clamp_min(1e-12).log() - student_lp)).sum(-1).mean()
    scored = following >= 0
    ce = F.cross_entropy(student_logits[scored], following[scored]) if bool(scored.any()) else student_logits.sum() * 0
    return alpha * temperature**2 * kl + (1.0 - alpha) * ce
