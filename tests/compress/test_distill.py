"""Knowledge distillation: the loss by hand, recovery after pruning, sparsity kept, QAT cleaned up."""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from orchestrator.compress import (
    Context,
    DistillConfig,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
    apply_technique,
)
from orchestrator.compress.prune import prunable_weights
from orchestrator.tasks.losses import LossSettings, kd_loss

STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
TEACHER = torch.tensor([[1.5, 1.0, -0.5], [-1.0, 0.0, 2.0]])
TARGETS = torch.tensor([0, 2])


def softmax(row: list[float], t: float) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def hand_kd(student, teacher, targets, t, alpha) -> float:
    n = len(student)
    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p_t, p_s = softmax(t_row, t), softmax(s_row, t)
        kl += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    ce = -sum(math.log(softmax(row, 1.0)[y]) for row, y in zip(student.tolist(), targets.tolist()))
    return alpha * t * t * kl / n + (1 - alpha) * ce / n


@pytest.mark.parametrize("temperature,alpha", [(4.0, 0.7), (1.0, 0.5), (2.0, 1.0), (3.0, 0.0)])
def test_kd_loss_equals_a_hand_computation(temperature, alpha):
    loss = kd_loss(STUDENT, TEACHER, TARGETS, temperature, alpha)
    assert loss.item() == pytest.approx(hand_kd(STUDENT, TEACHER, TARGETS, temperature, alpha), rel=1e-5)


def test_kd_loss_one_hand_value():
    # T=2, alpha=0.5 on the first row alone, written out with explicit softmax/log formulas.
    s, t = STUDENT[:1], TEACHER[:1]
    p_t = torch.exp(t / 2) / torch.exp(t / 2).sum()
    p_s = torch.exp(s / 2) / torch.exp(s / 2).sum()
    kl = (p_t * (p_t.log() - p_s.log())).sum()
    ce = -torch.log(torch.exp(s[0, 0]) / torch.exp(s).sum())
    expected = 0.5 * 4 * kl + 0.5 * ce
    assert kd_loss(s, t, TARGETS[:1], 2.0, 0.5).item() == pytest.approx(expected.item(), rel=1e-5)


def test_alpha_zero_is_plain_cross_entropy():
    assert torch.equal(kd_loss(STUDENT, TEACHER, TARGETS, 4.0, 0.0), F.cross_entropy(STUDENT, TARGETS))


def test_soft_loss_vanishes_when_the_student_copies_the_teacher():
    assert kd_loss(TEACHER, TEACHER, TARGETS, 4.0, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    assert kd_loss(STUDENT, TEACHER, TARGETS, 4.0, 1.0).item() > 0.01


def test_zero_steps_returns_the_model_untouched(cpu_ctx, teacher):
    model = copy.deepcopy(teacher)
    out, record = apply_technique(model, DistillConfig(steps=0), cpu_ctx)
    assert out is model and record.technique == "none"
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in out.state_dict().items())


def test_distillation_after_structured_70_recovers_at_least_half_the_loss(compress, digits_task, teacher):
    pruned, _ = compress(StructuredPruneConfig(ratio=0.7))
    teacher_acc = digits_task.evaluate(teacher, "val")["value"]
    pruned_acc = digits_task.evaluate(pruned, "val")["value"]
    assert pruned_acc < teacher_acc - 0.1, "70% structured pruning should hurt before fine-tuning"
    reference = copy.deepcopy(teacher.state_dict())
    student, record = compress(DistillConfig(steps=150, batch_size=32), model=pruned)
    student_acc = digits_task.evaluate(student, "val")["value"]
    assert student_acc - pruned_acc >= 0.5 * (teacher_acc - pruned_acc), (teacher_acc, pruned_acc, student_acc)
    assert record.technique == "kd" and record.details["final_loss"] < record.details["first_loss"]
    assert not student.training
    assert all(torch.equal(v, reference[k]) for k, v in teacher.state_dict().items()), "the teacher must not train"


def test_preserve_sparsity_keeps_pruned_weights_at_zero(compress):
    sparse, _ = compress(UnstructuredPruneConfig(ratio=0.8))
    zeros = {name: m.weight == 0 for name, m in prunable_weights(sparse)}
    kept, record = compress(DistillConfig(steps=8, preserve_sparsity=True), model=sparse)
    assert record.details["sparsity_preserved"] is True
    for name, module in prunable_weights(kept):
        assert torch.all(module.weight[zeros[name]] == 0), name
    regrown, _ = compress(DistillConfig(steps=8, preserve_sparsity=False), model=sparse)
    assert any(bool((m.weight[zeros[n]] != 0).any()) for n, m in prunable_weights(regrown)), (
        "control: without the flag zeros regrow"
    )


def test_qat_parametrizations_are_removed_afterwards(compress, teacher):
    student, record = compress(DistillConfig(steps=4, qat_bits=4, qat_group_size=32, preserve_sparsity=True))
    assert record.details["qat_bits"] == 4
    assert not any(parametrize.is_parametrized(m) for m in student.modules())
    assert set(student.state_dict()) == set(teacher.state_dict())
    assert all(isinstance(m.weight, nn.Parameter) for _, m in prunable_weights(student))
    changed = [
        n for n, m in prunable_weights(student) if not torch.equal(m.weight, dict(teacher.named_modules())[n].weight)
    ]
    assert changed, "QAT fine-tuning should still update the latent float weights"


def test_on_eval_receives_intermediate_values(digits_task, teacher):
    calls: list[tuple[int, float]] = []
    ctx = Context(
        task=digits_task,
        teacher=teacher,
        device=torch.device("cpu"),
        on_eval=lambda s, v: calls.append((s, v)),
        eval_every=4,
    )
    _, record = apply_technique(copy.deepcopy(teacher), DistillConfig(steps=10), ctx)
    assert [step for step, _ in calls] == [4, 8, 10]
    assert all(0.0 <= value <= 1.0 for _, value in calls)
    assert record.details["intermediate_val"] == calls


def test_no_callbacks_without_eval_every(digits_task, teacher):
    calls = []
    ctx = Context(task=digits_task, teacher=teacher, device=torch.device("cpu"), on_eval=lambda s, v: calls.append(s))
    _, record = apply_technique(copy.deepcopy(teacher), DistillConfig(steps=3), ctx)
    assert calls == [] and record.details["intermediate_val"] == []


@pytest.mark.parametrize("field,value", [("temperature", 0.0), ("alpha", 1.5), ("steps", -1), ("batch_size", 0)])
def test_bad_distill_settings_name_the_field(field, value):
    import pydantic

    with pytest.raises(pydantic.ValidationError, match=field):
        DistillConfig(**{field: value})


# ---- the task owns its loss: class ids get KL + CE, float targets MSE -----------------------------------


def test_the_regression_default_loss_equals_a_hand_computation():
    from tests.tasks.regression_task import RegressionTask

    student = torch.tensor([[1.0], [2.0], [0.5]])
    teacher = torch.tensor([[1.5], [1.0], [0.5]])
    targets = torch.tensor([[2.0], [2.0], [1.0]])
    # MSE to the teacher: (0.25 + 1 + 0) / 3; MSE to the targets: (1 + 0 + 0.25) / 3
    expected = 0.7 * (1.25 / 3) + 0.3 * (1.25 / 3)
    loss = RegressionTask(n_examples=60).distill_loss(student, teacher, targets, LossSettings(alpha=0.7))
    assert loss.item() == pytest.approx(expected)
    only_teacher = RegressionTask(n_examples=60).distill_loss(student, teacher, targets, LossSettings(alpha=1.0))
    assert only_teacher.item() == pytest.approx(1.25 / 3)


def test_class_ids_still_get_hintons_loss(digits_task):
    settings = LossSettings(temperature=3.0, alpha=0.4)
    assert torch.equal(
        digits_task.distill_loss(STUDENT, TEACHER, TARGETS, settings), kd_loss(STUDENT, TEACHER, TARGETS, 3.0, 0.4)
    )


def test_the_learning_rate_warms_up_linearly_then_decays_to_zero():
    from orchestrator.compress.distill import learning_rate_factor

    factors = [learning_rate_factor(s, 20, 4) for s in range(20)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # (s + 1) / (warmup + 1): the first step moves
    assert factors[4] == pytest.approx(1.0)  # the peak right after the warm-up
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))  # then only down
    assert learning_rate_factor(20, 20, 4) == pytest.approx(0.0)
    assert [learning_rate_factor(s, 10, 0) for s in (0, 5)] == pytest.approx([1.0, 0.5])  # no warm-up: plain cosine

