"""manifest.json: what an export holds, where it came from, what it costs, and every file's SHA-256."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.compress.recipe import Recipe
from orchestrator.deploy._errors import VerificationError
from orchestrator.tasks.checkpoint import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_CONTENT_TYPES = {
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".md": "text/markdown; charset=utf-8",
    ".safetensors": "application/octet-stream",
    ".pt2": "application/zip",  # a torch.export archive is a zip file
    ".onnx": "application/octet-stream",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Model):
    """One file of the export, relative to the export's root."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    content_type: str


class Program(_Model):
    """A runnable program of the model (or why there is none in that format)."""

    format: Literal["torch_export", "onnx", "onnx_int8_qdq"]
    file: str | None = None
    written: bool
    reason: str
    max_abs_diff: float | None = Field(
        None, description="largest output difference from the exported model on the val split"
    )
    quality: float | None = Field(
        None, description="validation quality of this program, where it differs from the model's"
    )


class QualityCheck(_Model):
    """The rebuilt candidate against what the trial measured."""

    metric: str
    split: Literal["val"] = "val"
    trial_value: float
    rebuilt_value: float
    tolerance: float
    passed: bool
    test_value: float | None = Field(None, description="held-out test quality from the search, where it was measured")


class TaskRef(_Model):
    """The task whose model this is: a built-in name or 'pkg.module:factory', with its arguments."""

    name: str
    args: dict[str, Any] = {}


class Architecture(_Model):
    """How the loader rebuilds the module the weights belong to, from the task's architecture."""

    prune_technique: str | None = None
    layer_widths: dict[str, int] | None = None
    pruning_history: list[list[Any]] | None = Field(
        None, description="Torch-Pruning history, replayed on the task's architecture"
    )
    quantize_technique: str | None = None
    weights_format: Literal["float", "bf16", "fp16", "int8_fx_static", "int8_dynamic"]
    input_shape: list[int] = Field(description="one example's shape (the batch dimension left out)")
    input_dtype: str = "float32"
    teacher_fingerprint: str = Field(description="SHA-256 of the teacher's tensors the candidate was rebuilt from")


class Deployment(_Model):
    """The cost model's answer for this candidate."""

    instance_type: str | None
    accelerator: str | None = None
    replicas: int | None
    hourly_replicas: list[int] | None = None
    monthly_usd: float | None
    projected: bool = False
    region: str | None = None
    catalog_as_of: str | None = None
    reason: str | None = None


class Manifest(_Model):
    """Everything a deployer needs to trust an export: provenance, quality, cost, versions, checksums."""

    manifest_version: Literal[1] = MANIFEST_VERSION
    created: str
    run_id: str
    trial_id: str
    recipe_key: str
    task: TaskRef
    recipe: Recipe
    quality: QualityCheck
    metrics: dict[str, Any]
    deployment: Deployment
    architecture: Architecture
    weights: str = Field(description="the safetensors file")
    programs: list[Program]
    default_runtime: Literal["torch", "torch_export", "onnx"]
    default_runtime_reason: str
    serve_config: str
    notes: list[str] = []
    versions: dict[str, str | None]
    files: list[FileEntry]

    def file(self, path: str) -> FileEntry:
        """The entry of one file; VerificationError if the manifest does not list it."""
        for entry in self.files:
            if entry.path == path:
                return entry
        raise VerificationError(f"{path}: not listed in the manifest's files")


def content_type(path: str | Path) -> str:
    """The Content-Type an export file is served with."""
    suffix = Path(path).suffix
    return _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


def file_entries(root: Path) -> list[FileEntry]:
    """An entry for every file under root except the manifest itself, sorted by path."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST_NAME:
            continue
        entries.append(
            FileEntry(
                path=rel, sha256=sha256_file(path), size_bytes=path.stat().st_size, content_type=content_type(rel)
            )
        )
    return entries


def verify_files(root: Path, manifest: Manifest) -> None:
    """Check every file the manifest lists: present, same size, same SHA-256. Raises VerificationError."""
    for entry in manifest.files:
        path = root / entry.path
        if not path.is_file():
            raise VerificationError(f"{path}: missing; the manifest lists it ({entry.size_bytes} bytes)")
        size = path.stat().st_size
        actual = sha256_file(path)
        if size != entry.size_bytes or actual != entry.sha256:
            raise VerificationError(
                f"{entry.path}: refused: SHA-256 {actual[:12]}… ({size} bytes) does not match the manifest's "
                f"{entry.sha256[:12]}… ({entry.size_bytes} bytes): the file was modified or truncated"
            )


def read_manifest(path: Path) -> Manifest:
    """Parse manifest.json; a missing or invalid one is a VerificationError naming the file."""
    if not path.is_file():
        raise VerificationError(f"{path}: no manifest.json: not a Hedgerow export, or its upload never completed")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise VerificationError(f"{path}: not a valid Hedgerow manifest: {exc}") from exc
