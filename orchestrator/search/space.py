"""The search space: config knobs → an Optuna define-by-run function with conditional knobs.

Knobs only exist where they matter: each technique declares when its knobs apply
(techniques/knobs.py), and the define-by-run function asks for a knob only where it
applies (prune_ratio when something is pruned, distillation settings when kd_steps > 0,
qat when there is a quantized candidate and distillation to run it in), in the order
the techniques declare for sampling. A knob other knobs fix is not sampled: 2:4
sparsity is always 50%, and a bit width only one runtime serves is served by it.

Numeric choices ({choices: [32, 16, 8, 4]}) are ordered: Optuna samples the
position in the sorted values as an integer named `<knob>_index`, so TPE, GP
and NSGA-II see that 8 bits lies between 4 and 16 (a categorical knob would
hide it); the config and trials.csv carry the value itself.

Trial number 0 of a study is always the uncompressed teacher: the baseline. It
is enqueued (OptunaSearch's points_to_evaluate) with the teacher's values of the
knobs that apply to every candidate, so the study records real parameters for it;
samplers that model only the knobs every trial shares (NSGA-II, GP) would otherwise
see none and fall back to random sampling. Where the space cannot express the
teacher (bits fixed at 8, say), trial 0's config is still forced to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from orchestrator.compress.recipe import Recipe
from orchestrator.compress.transformer_prune import prunable_units, structure_of
from orchestrator.config import INDEX_SUFFIX
from orchestrator.errors import InputError
from orchestrator.runtimes import REGISTRY
from orchestrator.runtimes.base import BIT_NAMES
from orchestrator.techniques import TECHNIQUES, Knob, always
from orchestrator.techniques.domains import Choices, Domain, Range, values_to_check

BASELINE: dict[str, Any] = TECHNIQUES.baseline()  # the teacher as the knob values a trial records


def choice_param(name: str, domain: Choices) -> tuple[str, list[Any], list[Any]]:
    """How Optuna samples a Choices knob: the parameter's name, the values it takes, and the knob value of each.

    All-numeric choices are searched by position in their sorted values (`bits_index` 0..3 for
    bits 4, 8, 16, 32); any other choices are a categorical parameter of the knob's own name.
    """
    choices = list(domain.choices)
    if len(choices) > 1 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in choices):
        values = sorted(set(choices))
        return name + INDEX_SUFFIX, list(range(len(values))), values
    return name, choices, choices


class DefineByRun:
    """Callable given to OptunaSearch as its space; returns the constants it did not sample."""

    def __init__(self, space: dict[str, Domain]) -> None:
        self.space = dict(space)

    def __call__(self, trial: Any) -> dict[str, Any]:
        fixed: dict[str, Any] = {"baseline": False}

        def pick(knob: Knob, so_far: Any) -> Any:
            name, domain = knob.name, self.space.get(knob.name)
            if domain is None:
                return knob.default
            if isinstance(domain, Choices):
                param, _, values = choice_param(name, domain)
                if param == name:
                    return trial.suggest_categorical(name, values)
                fixed[name] = values[trial.suggest_int(param, 0, len(values) - 1)]
                return fixed[name]
            if isinstance(domain, Range):
                if knob.integer:
                    return trial.suggest_int(name, int(domain.low), int(domain.high), step=int(domain.step or 1), log=domain.log)
                return trial.suggest_float(name, domain.low, domain.high, step=domain.step, log=domain.log)
            fixed[name] = domain
            return domain

        decided = TECHNIQUES.decide(pick)
        fixed.update({name: value for name, value in decided.items() if name not in fixed and name not in trial.params})
        if trial.number == 0:
            fixed.update(BASELINE, baseline=True)
        return fixed


def baseline_point(space: dict[str, Domain]) -> dict[str, Any]:
    """The teacher's values of the knobs that apply to every candidate, where their domains hold them: trial 0's
    enqueued params."""
    point = {}
    for knob in TECHNIQUES.knobs():
        domain, value = space.get(knob.name), knob.default
        if knob.applies is not always or knob.name not in BASELINE:
            continue
        if isinstance(domain, Choices) and value in domain.choices:
            param, options, values = choice_param(knob.name, domain)
            point[param] = options[values.index(value)]
        elif isinstance(domain, Range) and value is not None and domain.low <= value <= domain.high:
            point[knob.name] = value
    return point


def grid_space(space: dict[str, Domain], points: int) -> dict[str, list[Any]]:
    """Every sampled parameter as a list of values, for Optuna's GridSampler (ranges → evenly spaced points)."""
    grid: dict[str, list[Any]] = {}
    for name, domain in space.items():
        if isinstance(domain, Choices):
            param, options, _ = choice_param(name, domain)
            grid[param] = options
        elif isinstance(domain, Range):
            if domain.step:
                values = np.arange(domain.low, domain.high + domain.step / 2, domain.step)
            elif domain.log:
                values = np.geomspace(domain.low, domain.high, points)
            else:
                values = np.linspace(domain.low, domain.high, points)
            integer = TECHNIQUES.knob(name).integer
            grid[name] = sorted({int(v) if integer else round(float(v), 6) for v in values})
    return grid


def recipe_from_config(config: dict[str, Any], seed: int) -> Recipe:
    """The Recipe a trial's sampled config describes (unknown keys such as 'baseline' ignored)."""
    knobs = {k: v for k, v in config.items() if k in TECHNIQUES.names()}
    return Recipe(**knobs, seed=seed)


def check_space_fits(space: dict[str, Domain], task: Any) -> None:
    """The space must fit the task: the distillation losses it offers; transformer knobs that fit its encoder (no
    ratio that removes every head, no more layers than it has)."""
    offered = [str(loss) for loss in task.distill_losses]
    asked = [str(v) for v in values_to_check(space["kd_loss"])] if "kd_loss" in space else []
    refused = [loss for loss in asked if loss not in offered]
    if refused:
        pairs = (
            " (contrastive distillation trains on (query, passage) pairs: sentence-embedding tasks such as minilm and "
            "examples.hf_encoder_task offer it)" if "contrastive" in refused else ""
        )  # fmt: skip
        raise InputError(
            f"space.kd_loss: task {task.name!r} offers {', '.join(offered)}; got {', '.join(map(repr, refused))}{pairs}"
        )
    structural = [k.name for k in TECHNIQUES.get("transformer_prune").sampling()]
    used = [
        n for n in (*structural, "kd_hidden_weight")
        if n in space and any(v not in (0, 0.0, None) for v in values_to_check(space[n]))
    ]  # fmt: skip
    methods = values_to_check(space["prune_method"]) if "prune_method" in space else []
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
    units = prunable_units(task.teacher())  # heads counted as key-value groups where attention groups its queries
    widths = {
        "prune_heads_ratio": ("attention heads (key-value groups)" if getattr(task, "generates", False) else "attention heads",
                              units["prune_heads_ratio"]),
        "prune_ffn_ratio": ("feed-forward neurons", units["prune_ffn_ratio"]),
    }  # fmt: skip
    depth = len(structure["kept_layers"])
    searched_depth = [n for n in ("keep_layers", "drop_layers") if n in space and any(v not in (0, None) for v in values_to_check(space[n]))]
    if len(searched_depth) == 2:
        raise InputError(
            "space.drop_layers: search keep_layers (evenly spaced layers kept) or drop_layers (blocks dropped by "
            "importance), not both: a candidate with both would be refused"
        )
    for name, (what, width) in widths.items():
        for ratio in values_to_check(space[name]) if name in space else []:
            if round(float(ratio) * width) >= width:
                raise InputError(
                    f"space.{name}: {ratio} would remove all {width} {what} of each layer; "
                    f"expected a ratio below {(width - 0.5) / width:.4g}"
                )
    for keep in values_to_check(space["keep_layers"]) if "keep_layers" in space else []:
        if keep is not None and not 1 <= int(keep) <= depth:
            raise InputError(f"space.keep_layers: {keep} layers asked for; the encoder has {depth}, so 1..{depth}")


def check_runtimes(space: dict[str, Domain], device: str, gpu: float) -> None:
    """Each runtime searched needs one of its bit widths among the choices; a CPU-only one (ONNX Runtime) a CPU search."""
    runtimes = [r for r in REGISTRY if r.name in (set(values_to_check(space["runtime"])) if "runtime" in space else {"eager"})]
    bits = set(values_to_check(space["bits"])) if "bits" in space else {32}
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


STRUCTURAL_LLM_KNOBS = ("keep_layers", "drop_layers", "prune_heads_ratio", "prune_ffn_ratio")


def check_generating_task(space: dict[str, Domain], traffic: Any, task: Any) -> None:
    """A task that generates tokens (a causal LM) needs token traffic, an LLM runtime, and, for the pruning knobs,
    an architecture the decoder pruning table knows; token traffic needs such a task."""
    generates = bool(getattr(task, "generates", False))
    if not generates:
        if traffic.tokens is not None:
            raise InputError(
                f"traffic.tokens: task {task.name!r} does not generate tokens; prompt and output lengths apply to "
                "causal LMs (smollm2, examples.hf_causal_lm_task): leave tokens out"
            )
        return
    if traffic.tokens is None:
        raise InputError(
            f"traffic.tokens: task {task.name!r} generates tokens and is priced by them: give prompt_tokens, "
            "output_tokens, ttft_slo_p95_ms and tpot_slo_p95_ms"
        )
    runtimes = [str(v) for v in values_to_check(space["runtime"])] if "runtime" in space else ["eager"]
    others = [r for r in runtimes if r != "eager"]
    if others:
        raise InputError(
            f"space.runtime: {others} do not serve decoder LLMs in Hedgerow yet; the eager runtime (PyTorch with a KV "
            "cache, weight-only int8/int4 kernels) does"
        )
    bits = [int(v) for v in values_to_check(space["bits"])] if "bits" in space else [32]
    if 16 in bits:
        raise InputError("space.bits: 16 is not offered for decoder LLMs on the eager runtime; choose from 32, 8 and 4")
    used = [
        n for n in STRUCTURAL_LLM_KNOBS
        if n in space and any(v not in (0, 0.0, None) for v in values_to_check(space[n]))
    ]  # fmt: skip
    if used and not getattr(task, "prunable", True):
        from orchestrator.tasks.llm.loading import pruning_family_message

        raise InputError(f"space.{used[0]}: {task.source.describe()}: {pruning_family_message(task.model_type)}")
    depth = len(task.teacher().decoder_layers()) if used else None
    for drop in values_to_check(space["drop_layers"]) if "drop_layers" in space else []:
        if depth is not None and not 0 <= int(drop) < depth:
            raise InputError(f"space.drop_layers: {drop} blocks asked to be dropped; the model has {depth}, so 0..{depth - 1}")
