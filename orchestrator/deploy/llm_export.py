"""Export, and load, a decoder LLM candidate: a Hugging Face folder of float weights, quantized again at load.

What an LLM export holds (besides manifest.json, serve_config.yaml and README.md):

    model/   the rebuilt candidate's float32 weights AFTER pruning and distillation and BEFORE quantization, written by
             `model.hf.save_pretrained` (config.json, safetensors, generation_config.json) with the task's tokenizer
             beside them: `AutoModelForCausalLM.from_pretrained("model")` and `AutoTokenizer.from_pretrained("model")`
             load it with transformers alone.

The manifest's `generation` says which quantization `load` re-applies to those float weights (the trial's quantize
stage: weight-only int8/int4, dynamic int8, int4 fake-quantization or bf16; each is deterministic, round to nearest
without calibration), the serving limits, and how prompts are tokenized. Export checks, before anything is
published, that (1) the folder reloads to exactly the rebuilt float model (every tensor equal, and equal logits on a
chunk of val windows), and (2) the export loaded as a user loads it (checksums, then the quantization applied) gives
exactly the rebuilt candidate's logits on every val window, so its val log-perplexity is the rebuilt one, which
must be the trial's within the tolerance.

Every pass over the val windows runs `Task.predict_batch_size` windows at a time and compares them there: logits
[chunk, tokens, vocabulary] are the most ever held, never the split's. Passes over val: the rebuild's evaluation,
then the loaded export and the rebuilt candidate side by side (and one chunk of the float model twice).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from orchestrator.deploy._errors import ExportError, QualityMismatch
from orchestrator.deploy.generation import eos_token_ids
from orchestrator.deploy.llm_load import load_causal_lm_folder
from orchestrator.deploy.loader import load
from orchestrator.deploy.manifest import (
    MANIFEST_NAME,
    Architecture,
    GenerationSpec,
    InputSpec,
    LoadQuantization,
    Manifest,
    QualityCheck,
    ServingRuntime,
    TaskRef,
    file_entries,
)
from orchestrator.deploy.packaging import deployment_of, instance_of, versions, write_serve_config
from orchestrator.deploy.rebuild import Rebuilt
from orchestrator.deploy.runfolder import RunFolder, Trial
from orchestrator.runtimes import REGISTRY
from orchestrator.tasks.base import Task
from orchestrator.techniques import Stage, StepRecord

MODEL_DIR = "model"
DEFAULT_MAX_NEW_TOKENS = 64  # what `generate` decodes when not told (capped at the export's limit)
DEFAULT_MAX_NEW_TOKENS_LIMIT = 512  # traffic.tokens.max_new_tokens_limit's default, for runs without a tokens section
# A rebuilt LLM must score within this many nats per token of the trial (at most a tenth of the quality budget).
DEFAULT_LLM_TOLERANCE_NATS = 0.005
WEIGHT_ONLY_BACKENDS = ("aten_int8pack", "aten_int4pack_cpu")


# ---- the quantization load re-applies ------------------------------------------------------------------


def quantization_of(steps: list[StepRecord], recipe: Any) -> LoadQuantization | None:
    """What the trial's quantize stage did, as `load` re-applies it to float weights (None: the candidate is float).

    ExportError for a stage that cannot be re-applied on the CPU (torchao tensor subclasses on CUDA).
    """
    step = next((s for s in steps if s.stage is Stage.QUANTIZE), None)
    if step is None:
        return None
    technique, details = step.technique, step.details or {}
    bits = int(recipe.bits)
    head = getattr(recipe, "lm_head_bits", None)
    head = None if head is None or int(head) == bits else int(head)  # the head's width where it differs
    group = getattr(recipe, "int4_group_size", None) if 4 in (bits, head) else None
    knobs = {
        "technique": technique, "bits": bits, "lm_head_bits": head,
        "int8_activations": getattr(recipe, "int8_activations", None) if bits == 8 else None,
    }  # fmt: skip
    if technique in ("bf16", "fp16"):
        return LoadQuantization(method="half", dtype=technique, **knobs)
    if details.get("backend") in WEIGHT_ONLY_BACKENDS or "weight_only" in technique:
        return LoadQuantization(method="weight_only", group_size=details.get("group_size") or group, **knobs)
    if technique.startswith("int8_dynamic"):  # int8_dynamic, int8_dynamic_head_fp32, int8_dynamic_head_int4
        # With lm_head_bits 32 or 4 the head is skipped, then made weight-only int4 where 4.
        return LoadQuantization(method="dynamic_int8", group_size=group if head == 4 else None, **knobs)
    if technique == "int4_fake":
        return LoadQuantization(method="fake_int4", group_size=int(recipe.int4_group_size), **knobs)
    raise ExportError(
        f"the candidate's quantize stage {technique!r} (backend {details.get('backend')!r}) cannot be re-applied to "
        "float weights at load on the CPU; export a float, weight-only, dynamic int8 or bf16 candidate"
    )


# ---- limits and tolerance --------------------------------------------------------------------------------


def generation_limits(hf_config: Any, traffic: Any) -> tuple[int, int, int]:
    """(context tokens, max_new_tokens_limit, prompt_tokens_limit): the context is the model's
    max_position_embeddings; answers up to traffic.tokens.max_new_tokens_limit (512 without a tokens section), at most
    half the context; prompts up to the context less that limit, so any prompt within its limit takes any answer length."""
    context = int(getattr(hf_config, "max_position_embeddings", 0) or 0)
    if context < 2:
        raise ExportError(f"the model's config has max_position_embeddings {context!r}: no context to generate in")
    tokens = getattr(traffic, "tokens", None)
    wanted = int(tokens.max_new_tokens_limit) if tokens is not None else DEFAULT_MAX_NEW_TOKENS_LIMIT
    max_new = max(1, min(wanted, context // 2))
    return context, max_new, context - max_new


def llm_tolerance(max_quality_drop: float, tolerance: float | None) -> tuple[float, str]:
    """The largest |rebuilt − trial| val log-perplexity (nats per token) export accepts, and why."""
    if tolerance is not None:
        return tolerance, f"given: {tolerance} nats per token (perplexity ×{_ratio(tolerance)})"
    derived = min(DEFAULT_LLM_TOLERANCE_NATS, max_quality_drop / 10)
    return derived, (
        f"min({DEFAULT_LLM_TOLERANCE_NATS}, max_quality_drop {max_quality_drop:.4g} / 10) = {derived:.4g} nats per token "
        f"(perplexity ×{_ratio(derived)}): the rebuild is seeded, so on the search's machine and threads it is exact and "
        "elsewhere float rounding moves it by about 1e-4 nats; a different teacher or text moves it by far more. At a "
        "tenth of the quality budget, the export cannot sit more than 10% of the budget away from the candidate the "
        "search approved. The trial's bootstrap interval is not the yardstick: it measures which windows were drawn, "
        "and a rebuild is scored on the same windows"
    )


def _ratio(nats: float) -> str:
    return f"{math.exp(nats):.4f}"


# ---- writing the export ---------------------------------------------------------------------------------


def _versions() -> dict[str, str | None]:
    found = versions()
    for name in ("transformers", "tokenizers", "accelerate"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def compare_weights(got: nn.Module, want: nn.Module, what: str) -> None:
    """ExportError unless `got` holds exactly `want`'s tensors (names, shapes, dtypes, values)."""
    mine, theirs = got.state_dict(), want.state_dict()
    if sorted(mine) != sorted(theirs):
        extra, missing = sorted(set(mine) - set(theirs))[:3], sorted(set(theirs) - set(mine))[:3]
        raise ExportError(f"{what} has other tensors than the rebuilt model (extra {extra}, missing {missing}); nothing was exported")
    for name, tensor in theirs.items():
        if mine[name].dtype != tensor.dtype or not torch.equal(mine[name], tensor):
            raise ExportError(f"{what}: tensor {name!r} differs from the rebuilt model's; nothing was exported")


@torch.inference_mode()
def compare_logits(got: nn.Module, want: nn.Module, windows: torch.Tensor, chunk: int, what: str) -> None:
    """ExportError unless `got` gives exactly `want`'s logits on every window (`chunk` windows at a time)."""
    for start in range(0, len(windows), chunk):
        batch = windows[start : start + chunk]
        a, b = got(batch).float(), want(batch).float()
        if not torch.equal(a, b):
            raise ExportError(
                f"{what} does not reproduce the rebuilt model (windows {start}..{start + len(batch) - 1}: logits differ "
                f"by up to {(a - b).abs().max():.3g}); nothing was exported"
            )


def write_llm_export(
    root: Path,
    run: RunFolder,
    trial: Trial,
    task: Task,
    rebuilt: Rebuilt,
    final_location: str,
    tolerance: float,
    endpoint_url: str | None,
    progress: Callable[[str], None] = lambda message: None,
    tolerance_reason: str | None = None,
    require_token: bool = False,
) -> Manifest:
    """Write a decoder LLM's export into root (model/ folder, serve config, README, manifest last), then load it back
    as a user would and compare it with the rebuilt candidate, window by window."""
    if trial.recipe.runtime != REGISTRY.weights():
        raise ExportError(
            f"runtime {trial.recipe.runtime!r}: an LLM export is served by transformers from its weights (runtime "
            f"{REGISTRY.weights()!r}); export a trial on that runtime"
        )
    served = rebuilt.model.cpu().eval()
    float_model = (rebuilt.float_model if rebuilt.float_model is not None else served).cpu().eval()
    if not hasattr(float_model, "hf"):
        raise ExportError(f"the rebuilt model is a {type(float_model).__name__}, not a CausalLM with a Hugging Face model")
    quantization = quantization_of(rebuilt.steps, trial.recipe)
    windows = task.windows("val") if hasattr(task, "windows") else task.data("val")[0]
    chunk = task.predict_batch_size

    progress(f"writing the float weights and tokenizer to {MODEL_DIR}/ (save_pretrained)")
    folder = root / MODEL_DIR
    float_model.hf.save_pretrained(folder)
    task.save_preprocessor(folder)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # the serving user must be able to read them
    progress("reloading the folder with transformers and comparing it with the rebuilt float model")
    reloaded = load_causal_lm_folder(folder)
    compare_weights(reloaded, float_model, f"{MODEL_DIR}/ reloaded by AutoModelForCausalLM")
    compare_logits(reloaded, float_model, windows[:chunk], chunk, f"{MODEL_DIR}/ reloaded by AutoModelForCausalLM")
    del reloaded

    quality = rebuilt.quality
    if abs(quality["value"] - trial.quality) > tolerance + 1e-12:
        raise QualityMismatch(
            f"trial {trial.trial_id}: the export's val log_perplexity is {quality['value']:.5f}, the trial measured "
            f"{trial.quality:.5f}: {abs(quality['value'] - trial.quality):.5f} nats per token apart, more than the "
            f"tolerance of {tolerance:.5g}; nothing was exported"
        )
    context, max_new, prompt_limit = generation_limits(float_model.hf.config, run.config.traffic)
    tokenizer = getattr(task, "tokenizer", None)
    spec = GenerationSpec(
        model_dir=MODEL_DIR, tokenizer=MODEL_DIR, quantization=quantization, context_tokens=context,
        max_new_tokens_limit=max_new, prompt_tokens_limit=prompt_limit,
        default_max_new_tokens=min(DEFAULT_MAX_NEW_TOKENS, max_new), eos_token_ids=eos_token_ids(float_model.hf, tokenizer),
    )  # fmt: skip
    prune = next((s for s in rebuilt.steps if s.stage is Stage.PRUNE), None)
    arch = Architecture(
        prune_technique=prune.technique if prune is not None else None,
        quantize_technique=quantization.technique if quantization is not None else None,
        weights_format="float",
        input_shape=[],
        named_inputs={"input_ids": InputSpec(shape=[context], dtype="int64", variable_dims=[0])},
        teacher_fingerprint=rebuilt.teacher_fingerprint,
    )
    batch = run.config.traffic.serving_batch_size
    deployment = deployment_of(trial, batch)
    instance = instance_of(run, deployment.instance_type)
    serve_lines = write_serve_config(root, run, trial, deployment, instance, REGISTRY.weights(), final_location, endpoint_url,
                                     require_token=require_token)
    weights = f"{MODEL_DIR}/model.safetensors"
    if not (root / weights).is_file():
        weights = f"{MODEL_DIR}/model.safetensors.index.json"  # a sharded save
    import transformers

    manifest = Manifest(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        run_id=run.run_id,
        trial_id=trial.trial_id,
        recipe_key=trial.recipe.key(),
        task=TaskRef(name=run.config.task.name, args=run.config.task.args),
        recipe=trial.recipe,
        quality=QualityCheck(
            metric=quality["metric"], trial_value=trial.quality, rebuilt_value=quality["value"], tolerance=tolerance,
            passed=True, test_value=trial.test_quality, tolerance_reason=tolerance_reason,
        ),  # fmt: skip
        metrics=trial.record.metrics,
        deployment=deployment,
        architecture=arch,
        weights=weights,
        programs=[],
        default_runtime=REGISTRY.weights(),
        default_runtime_reason=(
            f"the Hugging Face folder {MODEL_DIR}/ loaded by transformers"
            + (f", quantized at load as the trial was ({quantization.technique})" if quantization else "")
        ),
        serving_runtime=ServingRuntime(
            name=REGISTRY.weights(), library="transformers", version=transformers.__version__, program=None,
            loader_runtime=REGISTRY.weights(), startup_seconds=trial.row.get("startup_seconds"),
        ),  # fmt: skip
        serve_config="serve_config.yaml",
        notes=_notes(quantization, deployment),
        versions=_versions(),
        files=[],
        generation=spec,
    )
    (root / "README.md").write_text(render_readme(manifest, final_location, serve_lines))
    manifest.files = file_entries(root)
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2, exclude_none=False) + "\n")
    progress("loading the export back (checksums, quantization) and comparing its logits with the rebuilt candidate")
    loaded = load(root)
    how = f" (quantized at load: {quantization.technique})" if quantization is not None else ""
    compare_logits(loaded.module, served, windows, chunk, f"the export, loaded as a user loads it{how},")
    return manifest


def _notes(quantization: LoadQuantization | None, deployment: Any) -> list[str]:
    notes = [
        f"{MODEL_DIR}/ holds float32 weights (after pruning and distillation, before quantization): transformers alone "
        "loads it as the float model; hedgerow's load() applies the recorded quantization on top",
        "generate() decodes greedily, one prompt at a time with a KV cache: a prompt's text never depends on the others",
    ]
    if quantization is not None and quantization.method == "fake_int4":
        notes.append("int4 was fake-quantized on the CPU: the float weights are rounded to the int4 grid at load (no int4 kernels)")
    if deployment.instance_type is None:
        notes.append("no instance type was feasible for this candidate: the Serve config has one replica; size it by hand")
    return notes


def render_readme(manifest: Manifest, location: str, serve_lines: list[str]) -> str:
    """The README of an LLM export: what is in it, how to load it with and without Hedgerow, how to serve it."""
    spec, q = manifest.generation, manifest.quality
    assert spec is not None
    quant = spec.quantization
    quant_text = (
        f"{quant.technique} ({quant.method}, {quant.bits}-bit"
        + (f", groups of {quant.group_size}" if quant.group_size else "")
        + (f", lm_head {quant.lm_head_bits}-bit" if quant.lm_head_bits else "")
        + ")"
        if quant
        else "none (float32)"
    )
    return "\n".join([
        f"# {manifest.task.name} LLM candidate {manifest.trial_id} (run {manifest.run_id})",
        "",
        f"- Recipe key {manifest.recipe_key} (the full recipe is in manifest.json).",
        f"- Quality: validation {q.metric} {q.rebuilt_value:.5f} nats per token when rebuilt for export (the trial "
        f"measured {q.trial_value:.5f}; tolerance {q.tolerance:.4g}).",
        f"- Quantization applied at load: {quant_text}.",
        f"- Limits: context {spec.context_tokens} tokens; prompts up to {spec.prompt_tokens_limit} tokens; answers up to "
        f"{spec.max_new_tokens_limit} new tokens (default {spec.default_max_new_tokens}). Greedy decoding, one prompt at a time.",
        "",
        "## Files",
        "",
        f"- `{spec.model_dir}/`: float32 weights (safetensors), config and tokenizer: "
        f"`AutoModelForCausalLM.from_pretrained(\"{spec.model_dir}\")` loads the float model (no quantization).",
        "- `serve_config.yaml`: Ray Serve config: `serve deploy serve_config.yaml`.",
        "- `manifest.json`: provenance, quality, limits, quantization, and the SHA-256 and size of every other file.",
        "",
        "## Load and generate",
        "",
        "```python",
        "from orchestrator.deploy import load",
        "",
        f'model = load("{location}")  # checks every file against manifest.json, then quantizes as the trial did',
        f'texts = model.generate(["def fibonacci(n):"], max_new_tokens={spec.default_max_new_tokens})',
        "```",
        "",
        "## Serve it with Ray Serve",
        "",
        "```bash",
        "serve deploy serve_config.yaml",
        "curl -X POST localhost:8000/ -H 'content-type: application/json' "
        f"-d '{{\"prompt\": \"def f(x):\", \"max_new_tokens\": {spec.default_max_new_tokens}}}'",
        "# -> {\"text\": \"...\"}; {\"prompts\": [...]} -> {\"texts\": [...]}",
        "```",
        "",
        "The HTTP endpoint has no authentication of its own: reach it only through a gateway that authenticates callers.",
        "",
        "Replicas, from the cost model:",
        "",
        *[f"- {line}" for line in serve_lines],
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in manifest.notes],
        "",
    ])
