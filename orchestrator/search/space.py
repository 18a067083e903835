"""The search space: config knobs → an Optuna define-by-run function with conditional knobs.

Knobs only exist where they matter: prune_ratio only when something is pruned,
distillation settings only when kd_steps > 0, qat only when bits <= 8 and there
is distillation to run it in.

The runtime (eager, compiled, onnxruntime) is sampled only for float32 and int8
candidates: 16-bit and fake-quantized int4 ones are served eagerly.

Numeric choices ({choices: [32, 16, 8, 4]}) are ordered: Optuna samples the
position in the sorted values as an integer named `<knob>_index`, so TPE, GP
and NSGA-II see that 8 bits lies between 4 and 16 (a categorical knob would
hide it); the config and trials.csv carry the value itself.

Trial number 0 of a study is always the uncompressed teacher: the baseline. It
is enqueued (OptunaSearch's points_to_evaluate) with the teacher's values of the
sampled top-level knobs, so the study records real parameters for it; samplers
that model only the knobs every trial shares (NSGA-II, GP) would otherwise see
none and fall back to random sampling. Where the space cannot express the
teacher (bits fixed at 8, say), trial 0's config is still forced to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orchestrator.compress.recipe import Recipe
from orchestrator.compress.transformer_prune import structure_of
from orchestrator.config import INDEX_SUFFIX, Choices, Knob, Range, knob_of_param, knob_values  # noqa: F401  (knob_of_param: re-exported)
from orchestrator.errors import InputError
from orchestrator.runtimes import REGISTRY
from orchestrator.runtimes.base import BIT_NAMES

BASELINE: dict[str, Any] = {
    "prune_method": "none", "prune_ratio": 0.0, "bits": 32, "kd_steps": 0, "qat": False,
    "prune_heads_ratio": 0.0, "prune_ffn_ratio": 0.0, "keep_layers": None, "runtime": "eager",
}  # fmt: skip
INTEGER_KNOBS = {name for name, f in Recipe.model_fields.items() if f.annotation in (int, int | None)}
KD_KNOBS = ("kd_temperature", "kd_alpha", "kd_loss", "kd_hidden_weight", "kd_learning_rate", "kd_batch_size")
TRANSFORMER_KNOBS = ("keep_layers", "prune_heads_ratio", "prune_ffn_ratio")  # transformer encoders (compress/encoder_families.py)


def choice_param(name: str, knob: Choices) -> tuple[str, list[Any], list[Any]]:
    """How Optuna samples a Choices knob: the parameter's name, the values it takes, and the knob value of each.

    All-numeric choices are searched by position in their sorted values (`bits_index` 0..3 for
    bits 4, 8, 16, 32); any other choices are a categorical parameter of the knob's own name.
    """
    choices = list(knob.choices)
    if len(choices) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in choices):
        values = sorted(set(choices))
        return name + INDEX_SUFFIX, list(range(len(values))), values
    return name, choices, choices


class DefineByRun:
    """Callable given to OptunaSearch as its space; returns the constants it did not sample."""

    def __init__(self, space: dict[str, Knob]) -> None:
        self.space = dict(space)

    def __call__(self, trial: Any) -> dict[str, Any]:
        fixed: dict[str, Any] = {"baseline": False}

        def pick(name: str) -> Any:
            knob = self.space.get(name)
            if knob is None:
                return Recipe.model_fields[name].default
            if isinstance(knob, Choices):
                param, _, values = choice_param(name, knob)
                if param == name:
                    return trial.suggest_categorical(name, values)
                fixed[name] = values[trial.suggest_int(param, 0, len(values) - 1)]
                return fixed[name]
            if isinstance(knob, Range):
                if name in INTEGER_KNOBS:
                    return trial.suggest_int(name, int(knob.low), int(knob.high), step=int(knob.step or 1), log=knob.log)
                return trial.suggest_float(name, knob.low, knob.high, step=knob.step, log=knob.log)
            fixed[name] = knob
            return knob

        method = pick("prune_method")
        fixed["prune_method"] = method
        if method == "none":
            fixed["prune_ratio"] = 0.0
        elif method == "semi_structured_2_4":
            fixed["prune_ratio"] = 0.5
        else:
            fixed["prune_ratio"] = pick("prune_ratio")
            if method == "structured":
                pick("prune_importance")
            else:
                pick("prune_scope")
        for name in TRANSFORMER_KNOBS:
            if name in self.space:
                pick(name)
        bits = pick("bits")
        if bits == 4:
            pick("int4_group_size")
        if bits in REGISTRY.choice_bits():
            fixed["runtime"] = pick("runtime")
        else:
            fixed["runtime"] = REGISTRY.serving(bits)[0]  # bf16 and int4 are served eagerly only
        steps = pick("kd_steps")
        fixed["kd_steps"] = steps
        if steps > 0:
            for name in KD_KNOBS:
                pick(name)
        fixed["qat"] = bool(pick("qat")) if steps > 0 and bits <= 8 else False
        if trial.number == 0:
            fixed.update(BASELINE, baseline=True)
        return fixed


def baseline_point(space: dict[str, Knob]) -> dict[str, Any]:
    """The teacher's values of the sampled top-level knobs whose domains hold them: trial 0's enqueued params."""
    point = {}
    for name in ("prune_method", "bits", "kd_steps", "prune_heads_ratio", "prune_ffn_ratio", "runtime"):
        knob, value = space.get(name), BASELINE[name]
        if isinstance(knob, Choices) and value in knob.choices:
            param, options, values = choice_param(name, knob)
            point[param] = options[values.index(value)]
        elif isinstance(knob, Range) and knob.low <= value <= knob.high:
            point[name] = value
    return point


def grid_space(space: dict[str, Knob], points: int) -> dict[str, list[Any]]:
    """Every sampled parameter as a list of values, for Optuna's GridSampler (ranges → evenly spaced points)."""
    grid: dict[str, list[Any]] = {}
    for name, knob in space.items():
        if isinstance(knob, Choices):
            param, options, _ = choice_param(name, knob)
            grid[param] = options
        elif isinstance(knob, Range):
            if knob.step:
                values = np.arange(knob.low, knob.high + knob.step / 2, knob.step)
            elif knob.log:
                values = np.geomspace(knob.low, knob.high, points)
            else:
                values = np.linspace(knob.low, knob.high, points)
            grid[name] = sorted({int(v) if name in INTEGER_KNOBS else round(float(v), 6) for v in values})
    return grid


def recipe_from_config(config: dict[str, Any], seed: int) -> Recipe:
    """The Recipe a trial's sampled config describes (unknown keys such as 'baseline' ignored)."""
    knobs = {k: v for k, v in config.items() if k in Recipe.model_fields and k != "seed"}
    return Recipe(**knobs, seed=seed)


def check_space_fits(space: dict[str, Knob], task: Any) -> None:
    """Transformer knobs must fit the task's encoder: no ratio that removes every head, no more layers than it has;
    a contrastive distillation loss needs a task with (query, passage) training pairs."""
    if "contrastive" in (knob_values(space["kd_loss"]) if "kd_loss" in space else []):
        from orchestrator.tasks.base import Task

        if type(task).pair_batches is Task.pair_batches:
            raise InputError(
                f"space.kd_loss: 'contrastive' trains on (query, passage) pairs, and task {task.name!r} has none; "
                "it applies to sentence-embedding tasks (minilm, examples.hf_encoder_task); use auto, cosine or mse"
            )
    used = [
        n for n in (*TRANSFORMER_KNOBS, "kd_hidden_weight")
        if n in space and any(v not in (0, 0.0, None) for v in knob_values(space[n]))
    ]  # fmt: skip
    methods = knob_values(space["prune_method"]) if "prune_method" in space else []
    if not used and "structured" not in methods:
        return
    try:
        structure = structure_of(task.teacher())  # the same for every encoder family: kept layers, heads, FFN neurons
    except ValueError as exc:
        if used:
            raise InputError(f"space.{used[0]}: task {task.name!r} cannot take this knob: {exc}") from None
        return
    if "structured" in methods:
        raise InputError(
            f"space.prune_method: 'structured' removes conv channels and Linear neurons of CNNs and MLPs; task "
            f"{task.name!r} is a transformer encoder, whose structure keep_layers, prune_heads_ratio and "
            "prune_ffn_ratio prune (unstructured pruning applies to both)"
        )
    widths = {
        "prune_heads_ratio": ("attention heads", len(structure["kept_heads"][0])),
        "prune_ffn_ratio": ("feed-forward neurons", len(structure["kept_ffn"][0])),
    }
    depth = len(structure["kept_layers"])
    for name, (what, width) in widths.items():
        for ratio in knob_values(space[name]) if name in space else []:
            if round(float(ratio) * width) >= width:
                raise InputError(
                    f"space.{name}: {ratio} would remove all {width} {what} of each layer; "
                    f"expected a ratio below {(width - 0.5) / width:.4g}"
                )
    for keep in knob_values(space["keep_layers"]) if "keep_layers" in space else []:
        if keep is not None and not 1 <= int(keep) <= depth:
            raise InputError(f"space.keep_layers: {keep} layers asked for; the encoder has {depth}, so 1..{depth}")


def check_runtimes(space: dict[str, Knob], device: str, gpu: float) -> None:
    """Each runtime searched needs one of its bit widths among the choices; a CPU-only one (ONNX Runtime) a CPU search."""
    runtimes = [r for r in REGISTRY if r.name in (set(knob_values(space["runtime"])) if "runtime" in space else {"eager"})]
    bits = set(knob_values(space["bits"])) if "bits" in space else {32}
    unserved = [r for r in runtimes if not bits & set(r.bits)]
    if unserved:
        wanted = sorted({b for r in unserved for b in r.bits}, reverse=True)
        raise InputError(
            f"space.runtime: {sorted(r.name for r in unserved)} serve {' or '.join(BIT_NAMES.get(b, str(b)) for b in wanted)} "
            f"models, and space.bits offers only {sorted(bits)}; add {' or '.join(map(str, wanted))} to space.bits, "
            f"or search runtime {' or '.join(REGISTRY.serving(min(bits)))}"
        )
    for runtime in runtimes:
        runtime.check_available()  # its library installed (an optional extra): exit 2 before Ray starts
        if runtime.cpu_only and (device == "cuda" or gpu > 0):
            raise InputError(
                f"space.runtime: {runtime.name!r} runs on {runtime.cpu_only}, and this search runs trials on a GPU "
                f"(search.device / search.resources_per_trial.gpu); search {' or '.join(r.name for r in REGISTRY if not r.cpu_only)} there"
            )
