"""Knowledge distillation from the teacher, optionally quantization-aware (fake-quantized weights).

The `distill` technique's knobs (kd_*, qat) apply only where a candidate distills (kd_steps > 0);
qat also needs a quantized candidate (bits 8 or 4), whose weights it fake-quantizes while training.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from orchestrator.compress.hidden_states import HiddenStateMatch, captured
from orchestrator.compress.prune import prunable_weights
from orchestrator.compress.quantize import fake_quantize
from orchestrator.tasks.batches import run, to_device
from orchestrator.tasks.losses import DistillLoss, LossSettings
from orchestrator.techniques import Context, Knob, Knobs, Stage, StepRecord, Technique, TechniqueConfig


class DistillConfig(TechniqueConfig):
    """KD settings; the loss is the task's (`Task.distill_loss`): KL + CE for class ids, MSE for float targets."""

    stage = Stage.DISTILL
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.7, ge=0.0, le=1.0)
    loss: DistillLoss = Field(
        DistillLoss.AUTO,
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


def distill(model: nn.Module, config: DistillConfig, ctx: Context) -> tuple[nn.Module, StepRecord]:
    """Train the student toward the teacher's softened outputs for `steps` optimizer steps."""
    details: dict = {"steps": config.steps}
    if config.steps == 0:
        return model, StepRecord.of(config, "none", details=details)
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
    make_batches = ctx.task.pair_batches if config.loss.trains_on_pairs else ctx.task.train_batches
    batches = make_batches(config.batch_size, seed=config.seed)
    loss_settings = LossSettings(temperature=config.temperature, alpha=config.alpha, loss=config.loss)
    losses: list[float] = []
    evals: list[tuple[int, float]] = []
    # A task whose training targets are the teacher's own (cached) outputs spares a teacher forward pass per step.
    hidden = HiddenStateMatch(student, teacher) if config.hidden_weight > 0 else None
    reuse_targets = ctx.task.distill_targets_are_teacher and hidden is None
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
            loss = ctx.task.distill_loss(student_out, teacher_logits, y, loss_settings)
            loss = loss + config.hidden_weight * hidden.loss(student_states, teacher_states, mask)
        else:
            if reuse_targets:
                teacher_logits = y
            else:
                with torch.no_grad():
                    teacher_logits = run(teacher, x)
            loss = ctx.task.distill_loss(run(student, x), teacher_logits, y, loss_settings)
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
    return student, StepRecord.of(config, "kd", details=details)


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


def _distills(knobs: Knobs) -> bool:
    return int(knobs["kd_steps"]) > 0


def _stages(recipe: Any) -> list[TechniqueConfig]:
    if recipe.kd_steps == 0:
        return []
    return [
        DistillConfig(
            temperature=recipe.kd_temperature, alpha=recipe.kd_alpha, loss=recipe.kd_loss, hidden_weight=recipe.kd_hidden_weight,
            steps=recipe.kd_steps, learning_rate=recipe.kd_learning_rate, batch_size=recipe.kd_batch_size,
            qat_bits=recipe.bits if recipe.qat else None,
            qat_group_size=recipe.int4_group_size if recipe.qat and recipe.bits == 4 else None,
            preserve_sparsity=recipe.prune_method in ("unstructured", "semi_structured_2_4"), seed=recipe.seed,
        )
    ]  # fmt: skip


def _describe(knobs: Knobs, shown: frozenset[str]) -> list[str]:
    """'KD 200 steps (T 4, α 0.7, contrastive loss, lr 3.0e-04) · QAT', or 'no distillation'."""
    steps = int(knobs.get("kd_steps", 0) or 0)
    if steps == 0:
        return ["no distillation"] if "kd_steps" in knobs else []
    settings = [
        f"T {float(knobs['kd_temperature']):.2g}" if "kd_temperature" in knobs else None,
        f"α {float(knobs['kd_alpha']):.2g}" if "kd_alpha" in knobs else None,
        f"{knobs['kd_loss']} loss" if str(knobs.get("kd_loss", DistillLoss.AUTO)) != DistillLoss.AUTO else None,
        f"lr {float(knobs['kd_learning_rate']):.1e}" if "kd_learning_rate" in knobs else None,
    ]
    inner = ", ".join(s for s in settings if s)
    return [f"KD {steps} steps" + (f" ({inner})" if inner else "")] + (["QAT"] if knobs.get("qat") else [])


def _check(recipe: Any) -> list[str]:
    problems = []
    if recipe.qat and recipe.bits > 8:
        problems.append(f"qat: quantization-aware training needs bits <= 8, got bits={recipe.bits}")
    elif recipe.qat and recipe.kd_steps == 0:
        problems.append("qat: quantization-aware training happens during distillation; set kd_steps > 0")
    return problems


TECHNIQUE = Technique(
    name="distill",
    knobs=(
        Knob("kd_temperature", float, 4.0, "softmax temperature of the KL term (class logits)", {"gt": 0},
             applies=_distills, in_key_when_default=True),
        Knob("kd_alpha", float, 0.7, "weight of the teacher term against the labels", {"ge": 0.0, "le": 1.0},
             applies=_distills, in_key_when_default=True),
        Knob("kd_loss", DistillLoss, DistillLoss.AUTO, "the distillation loss, one the task offers (Task.distill_losses)",
             applies=_distills),
        Knob("kd_hidden_weight", float, 0.0, "transformers: weight of hidden-state matching", {"ge": 0.0, "le": 100.0},
             applies=_distills),
        Knob("kd_steps", int, 0, "optimizer steps of distillation (0: none)", {"ge": 0}, in_key_when_default=True),
        Knob("kd_learning_rate", float, 1e-3, "peak learning rate (linear warm-up, then cosine decay)", {"gt": 0},
             applies=_distills, in_key_when_default=True),
        Knob("kd_batch_size", int, 64, "training examples per step", {"ge": 1}, applies=_distills,
             in_key_when_default=True),
        Knob("qat", bool, False, "fake-quantize weights to the candidate's bits while distilling",
             applies=lambda k: _distills(k) and int(k["bits"]) <= 8, inactive=False, in_key_when_default=True),
    ),  # fmt: skip
    sampled_as=("kd_steps", "kd_temperature", "kd_alpha", "kd_loss", "kd_hidden_weight", "kd_learning_rate",
                "kd_batch_size", "qat"),  # fmt: skip
    stages=_stages,
    describe=_describe,
    check=_check,
    handlers={DistillConfig: distill},
    stage_order=30,
    sample_order=50,
)
