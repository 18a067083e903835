"""What a load test serves and what it was promised: EXPORT, s3://... or RUN_DIR resolved to a verified export folder,
its Serve config, and the cost model's promise to one replica (the run's traffic, the replicas at the peak).

A run folder's trial is exported into RUN_DIR/exports/<run-id>/<trial-id>/ first, or the export already there is
reused when it verifies and holds that trial's recipe. An export folder's traffic comes from the run folder it was
exported into, where it sits in one (RUN_DIR/exports/<run-id>/<trial-id>/); elsewhere --rate and --slo-ms say it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from orchestrator.deploy.manifest import MANIFEST_NAME, Manifest
from orchestrator.deploy.runfolder import RUN_FILES, RunFolder, open_run
from orchestrator.errors import InputError
from orchestrator.report.loadtest import EXPORTS_DIR
from orchestrator.safe_files import check_yaml_nodes, join_inside, read_text

SOURCE = "EXPORT|RUN_DIR"
MAX_SERVE_CONFIG_BYTES = 1024 * 1024


@dataclass
class Target:
    """A verified export folder on this machine, its manifest and Serve config, and the run it came from (if found)."""

    label: str  # what the user named: a folder or an s3:// URI
    root: Path
    manifest: Manifest
    serve_config: dict[str, Any]
    run: RunFolder | None

    @property
    def app(self) -> dict[str, Any]:
        """The Serve config's one application."""
        return self.serve_config["applications"][0]

    @property
    def deployment(self) -> dict[str, Any]:
        """The application's one deployment spec (replicas, max_ongoing_requests, actor options)."""
        return self.app["deployments"][0]

    @property
    def threads(self) -> int:
        """Torch threads of one replica: the Serve config's, else what the trial was measured with, else 1."""
        device = self.manifest.metrics.get("device")
        measured = device.get("threads") if isinstance(device, dict) else None
        return int(self.app["args"].get("threads") or measured or 1)

    @property
    def replicas_at_peak(self) -> int:
        """Serve replicas the config runs at the busiest hour: num_replicas, or autoscaling's max_replicas."""
        spec = self.deployment
        auto = spec.get("autoscaling_config")
        return int(auto["max_replicas"] if auto else spec.get("num_replicas") or 1)

    @property
    def in_process_sps(self) -> float | None:
        """The trial's measured throughput (samples/s at the serving batch, with `threads`): what the cost model priced."""
        value = self.manifest.metrics.get("throughput_sps")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) and value > 0 else None


def resolve(
    source: str,
    trial_id: str | None = None,
    endpoint_url: str | None = None,
    progress: Callable[[str], None] = lambda message: None,
) -> Target:
    """EXPORT (a folder or s3:// URI) or RUN_DIR as a Target; InputError naming the argument where it is neither."""
    from orchestrator.deploy.loader import fetch

    text = str(source)
    if text.startswith("s3://"):
        _no_trial(trial_id)
        root, manifest = fetch(text, endpoint_url)
        return _target(text, root, manifest, None)
    path = Path(text).expanduser()
    if (path / MANIFEST_NAME).is_file() or path.name == MANIFEST_NAME:
        _no_trial(trial_id)
        root, manifest = fetch(path)
        return _target(str(path), root, manifest, _run_of_export(root, manifest))
    if path.is_dir() and all((path / name).is_file() for name in RUN_FILES):
        run = open_run(path)
        root = _export_of_run(run, trial_id, progress)
        root, manifest = fetch(root)
        return _target(str(root), root, manifest, run)
    raise InputError(
        f"{SOURCE}: {text} is neither an export (a folder holding {MANIFEST_NAME}, or s3://bucket/prefix/<run>/<trial>) "
        f"nor a run folder written by `hedgerow search` (holding {', '.join(RUN_FILES)})"
    )


def _no_trial(trial_id: str | None) -> None:
    if trial_id is not None:
        raise InputError("--trial: only with a RUN_DIR; an export holds one trial already")


def _target(label: str, root: Path, manifest: Manifest, run: RunFolder | None) -> Target:
    if manifest.generation is not None:
        raise InputError(
            f"{SOURCE}: {label} is a decoder LLM's export, priced per token (TTFT, TPOT): the load test drives exports "
            "priced per request only"
        )
    return Target(label=label, root=root, manifest=manifest, serve_config=read_serve_config(root, manifest), run=run)


def read_serve_config(root: Path, manifest: Manifest) -> dict[str, Any]:
    """The export's serve_config.yaml (verified against the manifest already), with one application and deployment."""
    path = join_inside(root, manifest.serve_config, "manifest serve_config")
    data = yaml.safe_load(read_text(path, MAX_SERVE_CONFIG_BYTES))
    check_yaml_nodes(data, str(path))
    apps = data.get("applications") if isinstance(data, dict) else None
    if not isinstance(apps, list) or len(apps) != 1 or not isinstance(apps[0], dict):
        raise InputError(f"{path}: expected a Serve config with one application, as `hedgerow export` writes")
    if not isinstance(apps[0].get("args"), dict) or not isinstance(apps[0].get("deployments"), list) or len(apps[0]["deployments"]) != 1:
        raise InputError(f"{path}: applications[0]: expected args and one deployment, as `hedgerow export` writes")
    return data


def _run_of_export(root: Path, manifest: Manifest) -> RunFolder | None:
    """The run folder an export sits in (RUN_DIR/exports/<run-id>/<trial-id>/) when it is the manifest's run; else None."""
    resolved = root.resolve()
    if len(resolved.parents) < 3 or resolved.parents[1].name != EXPORTS_DIR:
        return None
    candidate = resolved.parents[2]
    if not all((candidate / name).is_file() for name in RUN_FILES):
        return None
    try:
        run = open_run(candidate)
    except InputError:  # a damaged run folder: its traffic is unknown, as for an export kept elsewhere
        return None
    return run if run.run_id == manifest.run_id else None


def _export_of_run(run: RunFolder, trial_id: str | None, progress: Callable[[str], None]) -> Path:
    """RUN_DIR/exports/<run-id>/<trial-id>/: the export already there where it verifies and is the trial's, else a new one."""
    from orchestrator.deploy import VerificationError, export_trial, verify

    trial = run.trial(trial_id)  # an unknown or unfinished --trial is an InputError naming it
    dest = run.root / EXPORTS_DIR
    folder = join_inside(dest, f"{run.run_id}/{trial.trial_id}", "--trial")
    if (folder / MANIFEST_NAME).is_file():
        try:
            manifest = verify(folder)
        except VerificationError as exc:
            progress(f"{folder}: not reused ({exc}); exporting again")
        else:
            if manifest.recipe_key == trial.recipe.key() and manifest.run_id == run.run_id:
                progress(f"reusing the verified export {folder}")
                return folder
            progress(f"{folder}: holds recipe {manifest.recipe_key}, not trial {trial.trial_id}'s; exporting again")
    progress(f"exporting trial {trial.trial_id} into {dest}")
    result = export_trial(run.root, trial.trial_id, dest, progress=progress)
    return Path(result.location)
