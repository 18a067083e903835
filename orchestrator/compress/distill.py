"""Knowledge distillation from the teacher, optionally quantization-aware (fake-quantized weights)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from orchestrator.compress.hidden_states import HiddenStateMatch, captured
from orchestrator.compress.prune import prunable_weights
from orchestrator.compress.quantize import fake_quantize
from orchestrator.tasks.batches import run, to_device
from orchestrator.tasks.losses import kd_loss, regression_kd_loss  # noqa: F401  (re-exported: the task owns its loss)
from orchestrator.techniques import Context, StepRecord, TechniqueConfig, register


class DistillConfig(TechniqueConfig):
    """KD settings; the loss is the task's (`Task.distill_loss`): KL + CE for class ids, MSE for float targets."""

    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0.0, le=1.0)
    loss: Literal["auto", "cosine", "mse", "contrastive"] = Field(
        "auto",
        description="for embedding tasks: 1 − cosine or squared distance to the teacher (auto: the task's default), "
        "or contrastive: in-batch InfoNCE on (query, passage) training pairs plus 1 − cosine to the teacher",
    )
    hidden_weight: float = Field(
        0.0, ge=0.0, description="transformer encoders: weight of matching each kept layer's hidden states to the teacher's"
    )
    steps: int = Field(0, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    warmup_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of the steps over which the learning rate rises linearly to its peak"
    )
    batch_size: int = Field(64, ge=1)
    qat_bits: int | None = Field(None, description="fake-quantize weights to this many bits while training")
    qat_group_size: int | None = Field(None, description="group size of that fake quantization (None: per channel)")
    preserve_sparsity: bool = Field(False, description="keep weights that are exactly zero at zero")
    seed: int = 0


class FakeQuantWeight(nn.Module):
    """Parametrization that fake-quantizes a weight on every forward (straight-through gradient)."""

    def __init__(self, bits: int, group_size: int | None) -> None:
        super().__init__()
        self.bits, self.group_size = bits, group_size

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.bits, self.group_size)


@register(DistillConfig)
def distill(model: nn.Module, config: DistillConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Train the student toward the teacher's softened outputs for `steps` optimizer steps."""
    details: dict = {"steps": config.steps}
    if config.steps == 0:
        return model, StepRecord(stage="distill", technique="none", config=config.model_dump(), details=details)
    device = ctx.device
    student = model.to(device)
    teacher = ctx.teacher.to(device).eval()
    masks = _zero_masks(student) if config.preserve_sparsity else {}
    layers = [m for _, m in prunable_weights(student)]
    if config.qat_bits is not None:
        for module in layers:
            parametrize.register_parametrization(module, "weight", FakeQuantWeight(config.qat_bits, config.qat_group_size))
    torch.manual_seed(config.seed)
    # Embedding tables stay as the teacher's: they are half of a small transformer, and updating them costs
    # more per step than the layers being recovered while gaining little (pruning never touches them).
    frozen = {id(m.weight) for m in student.modules() if isinstance(m, nn.Embedding)}
    trained = [p for p in student.parameters() if id(p) not in frozen]
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=0.0)
    warmup_steps = round(config.warmup_fraction * config.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_factor(s, config.steps, warmup_steps))
    # The contrastive loss trains on (query, passage) pairs: each batch is its queries, then their passages.
    make_batches = ctx.task.pair_batches if config.loss == "contrastive" else ctx.task.train_batches
    batches = make_batches(config.batch_size, seed=config.seed)
    losses: list[float] = []
    evals: list[tuple[int, float]] = []
    # A task whose training targets are the teacher's own (cached) outputs spares a teacher forward pass per step.
    hidden = HiddenStateMatch(student, teacher) if config.hidden_weight > 0 else None
    reuse_targets = bool(getattr(ctx.task, "distill_targets_are_teacher", False)) and hidden is None
    student.train()
    for step in range(1, config.steps + 1):
        x, y = next(batches)
        x, y = to_device(ctx.task.compact(x), device), y.to(device)
        if hidden is not None:
            with torch.no_grad(), captured(hidden.teacher_layers) as teacher_states:
                teacher_logits = run(teacher, x)
            with captured(hidden.student_layers) as student_states:
                student_out = run(student, x)
            mask = ctx.task.token_mask(x)
            loss = ctx.task.distill_loss(student_out, teacher_logits, y, config)
            loss = loss + config.hidden_weight * hidden.loss(student_states, teacher_states, mask)
        else:
            if reuse_targets:
                teacher_logits = y
            else:
                with torch.no_grad():
                    teacher_logits = run(teacher, x)
            loss = ctx.task.distill_loss(run(student, x), teacher_logits, y, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        _reapply(masks)
        losses.append(loss.item())
        if ctx.on_eval is not None and ctx.eval_every and (step % ctx.eval_every == 0 or step == config.steps):
            value = ctx.task.evaluate_progress(student)  # val, or a fixed subset of it
            evals.append((step, value))
            ctx.on_eval(step, value)
            student.train()
    student.eval()
    if config.qat_bits is not None:
        for module in layers:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
    teacher.cpu()
    details.update(
        first_loss=round(losses[0], 5),
        final_loss=round(sum(losses[-10:]) / len(losses[-10:]), 5),
        qat_bits=config.qat_bits,
        sparsity_preserved=bool(masks),
        frozen_embedding_params=sum(p.numel() for p in student.parameters() if id(p) in frozen),
        hidden_state_layers=len(hidden.student_layers) if hidden is not None else 0,
        intermediate_val=evals,
    )
    return student, StepRecord(stage="distill", technique="kd", config=config.model_dump(), details=details)


def learning_rate_factor(step: int, steps: int, warmup_steps: int) -> float:
    """The share of the peak learning rate at optimizer step `step` (0-based): a linear warm-up, then a cosine decay.

    A student that starts from the teacher's kept layers sits near a good solution, and Adam's first updates, taken
    before its moment estimates settle, are the largest: the warm-up keeps them from throwing the copied weights away.
    The first step already moves (1 / (warmup_steps + 1) of the peak), so a short run is not wasted at rate zero.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _zero_masks(model: nn.Module) -> dict[nn.Parameter, torch.Tensor]:
    return {m.weight: m.weight.detach() != 0 for _, m in prunable_weights(model)}


@torch.no_grad()
def _reapply(masks: dict[nn.Parameter, torch.Tensor]) -> None:
    for weight, mask in masks.items():
        weight.mul_(mask)
