"""`hedgerow export`: rebuild a trial's candidate, check it, write weights, programs, configs and manifest.

The candidate is rebuilt from its recipe (seeded, so deterministic on a CPU)
with the task's teacher, and must match the trial's validation quality within
a tolerance. The export is written to a staging folder, loaded back through
`orchestrator.deploy.load` and compared with the rebuilt model before it is
moved into place (a local folder) or published (S3, manifest last). A local
staging folder is locked while its export runs; one that a killed export left
behind holds no lock, and the next export to the same place removes it.

Every pass over the val split runs in chunks: the reference outputs, each
reload and each runtime's program in chunks of the serving batch, the quality
checks in the task's own (`Task.predict_batch_size`). An export needs the memory
of the model, its programs and one chunk's activations, whatever the size of the
split: no more than the search that produced the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from orchestrator.cost.catalog import InstanceType
from orchestrator.deploy import _readme
from orchestrator.deploy._defaults import DEFAULT_TOLERANCE
from orchestrator.deploy._errors import ExportError
from orchestrator.deploy.llm_export import llm_tolerance, write_llm_export
from orchestrator.deploy.loader import load
from orchestrator.deploy.packaging import deployment_of as _deployment, instance_of as _instance, versions
from orchestrator.deploy.packaging import write_serve_config as _write_serve_config
from orchestrator.deploy.progress import PassProgress
from orchestrator.deploy.manifest import (
    MANIFEST_NAME,
    PT2_PROGRAM,
    Architecture,
    Deployment,
    Manifest,
    Program,
    QualityCheck,
    ServingRuntime,
    TaskRef,
    TextInput,
    file_entries,
)
from orchestrator.deploy.programs import (
    int8_fx_pt2_reason,
    onnx_fp32_program,
    onnx_int8_program,
    runtime_program,
    torch_export_program,
)
from orchestrator.deploy._errors import QualityMismatch
from orchestrator.deploy.rebuild import Rebuilt, check_quality, check_steps, rebuild
from orchestrator.deploy.runfolder import RunFolder, Trial, open_run
from orchestrator.deploy.s3 import (
    PublishResult,
    S3Location,
    S3Settings,
    check_bucket,
    make_client,
    parse_s3_uri,
    publish,
)
from orchestrator.deploy.serve_config import SERVE_CONFIG_NAME
from orchestrator.deploy.weights import architecture, load_module, save_weights
from orchestrator.errors import InputError
from orchestrator.runtimes import REGISTRY
from orchestrator.techniques import Stage
from orchestrator.tasks.base import Task
from orchestrator.tasks.batches import Inputs, run_in_chunks, watch_passes
from orchestrator.tasks.registry import load_task

log = logging.getLogger(__name__)
WEIGHTS_NAME = "model.safetensors"
PARTIAL, OLD = ".partial-", ".old-"  # .<trial>.partial-<id>: an export being written; .<trial>.old-<id>: the one it replaces
TOKENIZER_DIR = "tokenizer"


@dataclass
class ExportResult:
    """Where the export is (a folder or an s3:// URI), its manifest, and what publishing did."""

    location: str
    manifest: Manifest
    published: PublishResult | None = None


def export_trial(
    run_dir: str | Path,
    trial_id: str | None = None,
    dest: str | Path = "exports",
    endpoint_url: str | None = None,
    tolerance: float | None = None,
    s3_settings: S3Settings | None = None,
    on_object: Callable[[str, bool], None] | None = None,
    progress: Callable[[str], None] = lambda message: None,
    progress_every_s: float = 10.0,
    require_token: bool = False,
) -> ExportResult:
    """Export one trial of a run (default: the recommended one) to a folder or to s3://bucket/prefix.

    Every pass over the val split runs in chunks (see the module's docstring), so memory follows the chunk, not
    the split; a pass that takes longer than `progress_every_s` reports how far it is through `progress`.
    tolerance: the largest |rebuilt − trial| val quality, in the metric's units (None: 0.005, half a point of
    accuracy; for a decoder LLM, nats per token derived from the run's quality budget: see llm_export.llm_tolerance).
    A task that `generates` (a decoder LLM) is exported as a Hugging Face folder (orchestrator/deploy/llm_export.py).
    require_token: the Serve config makes every request carry the bearer token in $HEDGEROW_SERVE_TOKEN.
    """
    if tolerance is not None and not 0 <= tolerance < 1:
        raise InputError(
            f"--tolerance: expected a fraction of the metric in [0, 1) (0.005 is half a point), got {tolerance}"
        )
    run = open_run(run_dir)
    trial = run.trial(trial_id)
    to_s3 = str(dest).startswith("s3://")
    settings = s3_settings or S3Settings(endpoint_url=endpoint_url)
    if to_s3:
        location = parse_s3_uri(str(dest))
        target = S3Location(location.bucket, location.key(run.run_id, trial.trial_id))
        check_bucket(make_client(settings), location, settings)  # a bad bucket fails before a minute of rebuilding
        final_uri = target.uri()
    else:
        final = Path(dest).expanduser().resolve() / run.run_id / trial.trial_id
        final_uri = str(final)

    task = load_task(run.config.task.name, run.config.task.args, field="config.yaml task.name")
    writer: Callable[..., Manifest] = write_export
    if task.generates:
        tolerance, reason = llm_tolerance(run.config.objective.max_quality_drop, tolerance)
        writer = functools.partial(write_llm_export, tolerance_reason=reason)
    elif tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    writer = functools.partial(writer, require_token=require_token)
    unit = "texts" if task.sequence_inputs or task.generates else "examples"
    with watch_passes(PassProgress(progress, unit, every_s=progress_every_s)):
        rebuilt = _rebuild_checked(run, trial, task, tolerance, progress)
        if to_s3:
            staging = Path(tempfile.mkdtemp(prefix="hedgerow-export-"))
            try:
                manifest = writer(staging, run, trial, task, rebuilt, final_uri, tolerance, endpoint_url, progress)
                progress(f"publishing to {final_uri}")
                published = publish(staging, target, settings, on_object=on_object)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return ExportResult(location=final_uri, manifest=manifest, published=published)

        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_staging(final.parent):
            progress(f"removed {stale}: the unfinished export of an interrupted run")
        staging = final.parent / f".{trial.trial_id}{PARTIAL}{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        with held(staging):  # while this export runs, no other one takes its staging folder for stale
            try:
                manifest = writer(staging, run, trial, task, rebuilt, final_uri, tolerance, None, progress)
                _replace_dir(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(location=final_uri, manifest=manifest)


def _rebuild_checked(run: RunFolder, trial: Trial, task: Task, tolerance: float, progress: Callable[[str], None]) -> Rebuilt:
    """The trial's candidate rebuilt from its recipe, checked against the trial's teacher, quality and stages."""
    progress(f"rebuilding trial {trial.trial_id} ({trial.recipe.key()}) from its recipe")
    rebuilt = rebuild(
        task, trial.recipe, device=trial.record.compression.device, threads=trial.row.get("threads"),
        serving_batch_size=run.config.traffic.serving_batch_size,
    )  # fmt: skip
    recorded = run.meta.get("teacher_fingerprint")
    if recorded and recorded != rebuilt.teacher_fingerprint:
        raise QualityMismatch(
            f"the teacher loaded here (fingerprint {rebuilt.teacher_fingerprint[:16]}…) is not the one run "
            f"{run.run_id} searched with ({recorded[:16]}…, in {run.root / 'run.json'}): export where the search "
            "ran, or with HEDGEROW_CACHE_DIR pointing at the search's teacher cache"
        )
    check_quality(rebuilt, trial.quality, tolerance, trial.trial_id)
    problems = check_steps(rebuilt, trial.record.compression.steps)
    if problems:
        raise ExportError(
            f"trial {trial.trial_id}: the rebuilt candidate differs from the trial's record: {'; '.join(problems)}"
        )
    return rebuilt


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove what killed exports left in `folder`: staging folders no running export holds, and the previous
    version of an export whose replacement is already in place; returns what was removed."""
    removed = []
    for path in sorted(folder.glob(f".*{PARTIAL}*")) + sorted(folder.glob(f".*{OLD}*")):
        if not path.is_dir() or path.is_symlink():
            continue
        if OLD in path.name and not (folder / path.name[1:].split(OLD)[0]).is_dir():
            continue  # killed between two renames: this is the only copy of that export; left for a person to see
        try:
            with held(path):
                shutil.rmtree(path)
        except BlockingIOError:
            continue  # another export is writing it now
        removed.append(path)
    return removed


@contextlib.contextmanager
def held(folder: Path) -> Iterator[None]:
    """An exclusive lock on a folder for the block (BlockingIOError where another process holds it); a killed
    process's lock goes with it, which is how a stale staging folder is told from one in use."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _replace_dir(new: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = final.parent / f".{final.name}{OLD}{uuid.uuid4().hex[:8]}"
        final.rename(old)
    new.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_export(
    root: Path,
    run: RunFolder,
    trial: Trial,
    task: Task,
    rebuilt: Rebuilt,
    final_location: str,
    tolerance: float,
    endpoint_url: str | None,
    progress: Callable[[str], None] = lambda message: None,
    require_token: bool = False,
) -> Manifest:
    """Write every file of the export into root, manifest.json last, then load it back and compare.

    The model runs the val split `serving_batch_size` examples at a time: memory follows the serving batch.
    """
    batch = run.config.traffic.serving_batch_size
    runtime_name = trial.recipe.runtime
    served = rebuilt.model.cpu().eval()
    eager = REGISTRY.get(runtime_name).loads_anywhere  # its program is the weights
    # Another runtime serves its own program; the safetensors beside it hold the float weights it was built from.
    model = served if eager else rebuilt.float_model
    if model is None:
        raise ExportError(f"runtime {runtime_name!r}: the rebuild kept no float model before the runtime stage")
    inputs, _ = task.data("val")
    progress(f"running the val split through the model, {batch} at a time (the reference every check compares with)")
    with torch.inference_mode():
        reference = run_in_chunks(model, inputs, batch)
    arch = architecture(task, rebuilt.steps if eager else rebuilt.weight_steps(), inputs, rebuilt.teacher_fingerprint)
    text = task.save_preprocessor(root / TOKENIZER_DIR)
    if text is not None:
        arch = arch.model_copy(update={"text": TextInput(tokenizer=TOKENIZER_DIR, **text)})
    progress("writing weights (safetensors) and checking they reload exactly")
    _write_weights(model, task, arch, inputs, reference, root, batch)
    programs, serving, why = _write_programs(root, trial, task, rebuilt, model, arch, inputs, reference, tolerance, batch, progress)
    runtime = serving.loader_runtime
    deployment = _deployment(trial, batch)
    instance = _instance(run, deployment.instance_type)
    serve_lines = _write_serve_config(root, run, trial, deployment, instance, runtime, final_location, endpoint_url,
                                      require_token=require_token)
    manifest = Manifest(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        run_id=run.run_id,
        trial_id=trial.trial_id,
        recipe_key=trial.recipe.key(),
        task=TaskRef(name=run.config.task.name, args=run.config.task.args),
        recipe=trial.recipe,
        quality=QualityCheck(
            metric=rebuilt.quality["metric"],
            trial_value=trial.quality,
            rebuilt_value=rebuilt.quality["value"],
            tolerance=tolerance,
            passed=True,
            test_value=trial.test_quality,
        ),
        metrics=trial.record.metrics,
        deployment=deployment,
        architecture=arch,
        weights=WEIGHTS_NAME,
        programs=programs,
        default_runtime=runtime,  # type: ignore[arg-type]
        default_runtime_reason=why,
        serving_runtime=serving,
        serve_config=SERVE_CONFIG_NAME,
        notes=_notes(trial, arch.weights_format, instance, deployment),
        versions=versions(),
        files=[],
    )
    (root / "README.md").write_text(_readme.render(manifest, final_location, serve_lines))
    manifest.files = file_entries(root)
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2) + "\n")
    progress("loading the export back and comparing its outputs")
    _check_loaded(root, task, trial, inputs, reference, runtime, eager, tolerance, batch)
    return manifest


def _write_programs(root: Path, trial: Trial, task: Task, rebuilt: Rebuilt, model: nn.Module, arch: Architecture,
                    inputs: Inputs, reference: torch.Tensor, tolerance: float, batch: int,
                    progress: Callable[[str], None]) -> tuple[list[Program], ServingRuntime, str]:  # fmt: skip
    """The runnable programs: eager's (torch.export, ONNX) from the weights, or the program another runtime served,
    loaded back and judged; with the runtime that serves the export as measured, and why it is the default."""
    runtime_name = trial.recipe.runtime
    if REGISTRY.get(runtime_name).loads_anywhere:
        progress("writing runnable programs (torch.export, ONNX)")
        programs = _programs(model, rebuilt, task, arch.weights_format, inputs, reference, root, batch)
        runtime, why = _default_runtime(programs)
        serving = ServingRuntime(
            name=runtime_name, library="torch", version=torch.__version__,
            program=next((p.file for p in programs if p.format == runtime and p.written), None), loader_runtime=runtime,
            startup_seconds=trial.row.get("startup_seconds"),
        )  # fmt: skip
        return programs, serving, why
    progress(f"writing the {runtime_name} program the trial served, and loading it back")
    served = rebuilt.model.cpu().eval()
    program, serving = runtime_program(served, runtime_name, rebuilt.steps, task, inputs, root, batch_size=batch)
    check_program_quality(program.quality, f"{program.file}: the program", trial, tolerance)
    why = (
        f"the trial built, measured and priced this candidate on runtime {runtime_name!r}: {program.file} is that program "
        f"(val {rebuilt.quality['metric']} {program.quality:.4f}); {WEIGHTS_NAME} holds the float weights it was built from"
    )
    return [program], serving, why


def _write_weights(model: nn.Module, task: Task, arch: Architecture, inputs: Inputs, reference: torch.Tensor, root: Path,
                   batch: int) -> None:  # fmt: skip
    """model.safetensors, loaded back into the task's architecture: it must reproduce the model exactly."""
    save_weights(model, root / WEIGHTS_NAME, arch.weights_format)
    reloaded_module = load_module(task, arch, root / WEIGHTS_NAME)
    with torch.inference_mode():
        reloaded = run_in_chunks(reloaded_module, inputs, batch)
    if not torch.equal(reloaded, reference):
        raise ExportError(
            f"{WEIGHTS_NAME}: the reloaded weights do not reproduce the model (max difference {(reloaded - reference).abs().max():.3g})"
        )


def _check_loaded(root: Path, task: Task, trial: Trial, inputs: Inputs, reference: torch.Tensor, runtime: str, eager: bool,
                  tolerance: float, batch: int) -> None:  # fmt: skip
    """The written export, loaded as a user loads it, reproduces the model (and its runtime program scores as the trial)."""
    checks = (REGISTRY.weights(), runtime) if eager else (REGISTRY.weights(),)
    for check in checks:
        outputs = load(root, runtime=check, batch_size=batch).predict(inputs)
        if not torch.equal(outputs, reference):
            raise ExportError(
                f"the export loaded with runtime {check!r} does not reproduce the model (max difference {(outputs - reference).abs().max():.3g})"
            )
    if not eager:
        loaded = load(root, runtime=runtime, batch_size=batch)
        value = task.evaluate(loaded.module, "val")["value"]
        check_program_quality(value, f"the export loaded with runtime {runtime!r}", trial, tolerance)


def check_program_quality(value: float | None, what: str, trial: Trial, tolerance: float) -> None:
    """A runtime's program must score as the trial measured, within the tolerance, before anything is published."""
    if value is not None and abs(value - trial.quality) > tolerance + 1e-12:
        raise QualityMismatch(
            f"{what} scores {value:.4f} on val, the trial measured {trial.quality:.4f}; "
            f"more than the tolerance of {tolerance}, so nothing was exported"
        )


def _programs(model, rebuilt: Rebuilt, task: Task, fmt: str, inputs, reference, root: Path, batch: int) -> list[Program]:
    if fmt.startswith("int8"):
        quantize = next(s for s in rebuilt.steps if s.stage is Stage.QUANTIZE)
        calibration = task.calibration_batches(
            int(quantize.config.get("calibration_batches", 8)), int(quantize.config.get("calibration_batch_size", 64))
        )
        if rebuilt.float_model is None:
            onnx = Program(
                format="onnx_int8_qdq", written=False, reason="not written: no float model before quantization"
            )
        else:
            onnx = onnx_int8_program(
                rebuilt.float_model, task, inputs, root, calibration, dynamic=fmt == "int8_dynamic"
            )
        return [int8_fx_pt2_reason(), onnx]
    programs = [torch_export_program(model, inputs, reference, root, task.sequence_inputs, batch_size=batch)]
    if fmt == "float":
        programs.append(onnx_fp32_program(model, task, inputs, reference, root, batch_size=batch))
    else:
        from orchestrator.deploy.programs import HALF_ONNX_REASON

        programs.append(Program(format="onnx", written=False, reason=HALF_ONNX_REASON))
    return programs


def _default_runtime(programs: list[Program]) -> tuple[str, str]:
    pt2 = next((p for p in programs if p.format == PT2_PROGRAM), None)
    if pt2 is not None and pt2.written and pt2.max_abs_diff == 0:
        return PT2_PROGRAM, "model.pt2 reproduces the model exactly and loads without the task's code"
    return REGISTRY.weights(), "the safetensors weights loaded into the task's architecture are the model the trial measured" + (
        " (torch.export cannot express it)" if pt2 is not None and not pt2.written else ""
    )


def _notes(trial: Trial, fmt: str, instance: InstanceType | None, deployment: Deployment) -> list[str]:
    notes = []
    recipe = trial.recipe
    if recipe.bits == 4 and fmt == "float":
        notes.append(
            "int4 was fake-quantized on the CPU: the weights are float32 on the int4 grid, so the files are full float32 size"
        )
    if recipe.prune_method == "unstructured":
        notes.append("unstructured pruning: the zeros are stored dense; no sparse kernels are used")
    if fmt == "int8_fx_static" and instance is not None and instance.cpu_arch != "x86_64":
        notes.append(
            f"{instance.instance_type} is {instance.cpu_arch}: torch's x86 int8 backend does not run there; "
            "serve model.int8.onnx with runtime 'onnxruntime' and re-check its quality and throughput on that instance"
        )
    if deployment.projected:
        notes.append(
            f"the throughput on {deployment.instance_type} is projected, not measured there: {deployment.reason}"
        )
    if deployment.instance_type is None:
        notes.append(
            "no instance type was feasible for this candidate: the Serve config has one replica; size it by hand"
        )
    return notes
