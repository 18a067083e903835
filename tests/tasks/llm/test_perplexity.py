"""Perplexity windows, the teacher's packed top-k, KL and logit distillation, against direct computations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from orchestrator.tasks.llm.perplexity import (
    kl_and_agreement,
    logit_kd_loss,
    nll_per_window,
    pack_top_k,
    score_windows,
    unpack_top_k,
)

V, T = 11, 7


def _logits(seed: int, b: int = 3) -> torch.Tensor:
    return torch.randn(b, T, V, generator=torch.Generator().manual_seed(seed)) * 2


def _ids(b: int = 3) -> torch.Tensor:
    return torch.randint(0, V, (b, T), generator=torch.Generator().manual_seed(99))


def test_nll_per_window_is_the_mean_cross_entropy_of_each_next_token():
    logits, ids = _logits(0), _ids()
    expected = torch.stack([F.cross_entropy(logits[i, :-1], ids[i, 1:]) for i in range(len(ids))]).double()
    assert torch.allclose(nll_per_window(logits, ids), expected, atol=1e-6)


def test_packing_keeps_top_k_log_probabilities_ids_and_the_next_token():
    logits, ids = _logits(1), _ids()
    lp, top, following = unpack_top_k(pack_top_k(logits, ids, k=4))
    full = F.log_softmax(logits, dim=-1)
    assert torch.equal(top, full.topk(4, dim=-1).indices)
    assert torch.allclose(lp, full.gather(-1, top))
    assert torch.equal(following[:, :-1], ids[:, 1:]) and bool((following[:, -1] == -1).all())


def test_kl_over_the_whole_vocabulary_is_the_exact_kl_and_zero_against_itself():
    teacher, student, ids = _logits(2), _logits(3), _ids()
    packed = pack_top_k(teacher, ids, k=V)  # k = V: nothing left out
    kl, agree = kl_and_agreement(student, packed)
    p, q = F.log_softmax(teacher, -1), F.log_softmax(student, -1)
    exact = (p.exp() * (p - q)).sum(-1).mean(dim=1).double()
    assert torch.allclose(kl, exact, atol=1e-6)
    assert torch.allclose(agree, (teacher.argmax(-1) == student.argmax(-1)).double().mean(dim=1))
    self_kl, self_agree = kl_and_agreement(teacher, packed)
    assert torch.allclose(self_kl, torch.zeros(3, dtype=torch.double), atol=1e-6) and bool((self_agree == 1).all())


def test_top_k_kl_leaves_out_only_the_tail_mass():
    teacher, student, ids = _logits(4), _logits(5), _ids()
    kl_full, _ = kl_and_agreement(student, pack_top_k(teacher, ids, k=V))
    kl_top, _ = kl_and_agreement(student, pack_top_k(teacher, ids, k=3))
    assert not torch.allclose(kl_full, kl_top)  # the tail counts in the exact figure, not in the top-3 one


def test_logit_kd_loss_at_t1_alpha1_full_vocabulary_is_the_kl_divergence():
    teacher, ids = _logits(6), _ids()
    student = _logits(7).requires_grad_()
    loss = logit_kd_loss(student, pack_top_k(teacher, ids, k=V), temperature=1.0, alpha=1.0)
    expected = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True, reduction="none").sum(-1).mean()
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_logit_kd_loss_alpha0_is_cross_entropy_on_the_text():
    teacher, ids, student = _logits(8), _ids(), _logits(9)
    loss = logit_kd_loss(student, pack_top_k(teacher, ids, k=3), temperature=2.0, alpha=0.0)
    expected = F.cross_entropy(student[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)


def test_score_windows_runs_chunk_windows_at_a_time_and_matches_one_pass():
    class Table(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(V, V)
            self.calls: list[int] = []

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            self.calls.append(len(ids))
            return self.emb(ids)

    model, ids = Table(), torch.randint(0, V, (5, T), generator=torch.Generator().manual_seed(1))
    scores = score_windows(model, ids, chunk=2, teacher_packed=pack_top_k(model(ids).detach(), ids, 4))
    assert model.calls[1:] == [2, 2, 1]
    assert torch.allclose(scores.nll, nll_per_window(model.emb(ids).detach(), ids))
    assert torch.allclose(scores.kl, torch.zeros(5, dtype=torch.double), atol=1e-6)
