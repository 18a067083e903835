"""manifest.json: what an export holds, where it came from, what it costs, and every file's SHA-256."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.compress.recipe import Recipe
from orchestrator.deploy._errors import UnsafeExport, VerificationError
from orchestrator.runtimes import REGISTRY
from orchestrator.errors import UnsafeFile
from orchestrator.safe_files import MIB, check_regular_file, check_relative_path, join_inside
from orchestrator.tasks.checkpoint import sha256_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 4 * MIB  # a manifest lists a handful of files; anything near this is not ours
MAX_FILES = 10_000
PT2_PROGRAM = "torch_export"  # `load(runtime="torch_export")`: the .pt2 program run by torch, without the task's code


def _runtime_name(value: Any) -> str:
    """A registered runtime as manifests name it: older manifests' 'torch' and 'onnx' read as 'eager' and 'onnxruntime'."""
    try:
        return REGISTRY.canonical(value)
    except (ValueError, TypeError):
        raise ValueError(f"expected one of {', '.join(map(repr, REGISTRY.names))}, got {value!r}") from None


def _loader_name(value: Any) -> str:
    """What `load(runtime=...)` takes: a registered runtime, or the .pt2 program run by torch."""
    if value == PT2_PROGRAM:
        return PT2_PROGRAM
    try:
        return REGISTRY.canonical(value)
    except (ValueError, TypeError):
        raise ValueError(f"expected one of {', '.join(map(repr, (*REGISTRY.names, PT2_PROGRAM)))}, got {value!r}") from None


def _program_format(value: Any) -> str:
    """A program format some registered runtime loads (or the .pt2 program torch runs)."""
    formats = (*REGISTRY.program_formats(), PT2_PROGRAM)
    if value not in formats:
        raise ValueError(f"expected one of {', '.join(map(repr, dict.fromkeys(formats)))}, got {value!r}")
    return str(value)


RuntimeName = Annotated[str, BeforeValidator(_runtime_name)]  # checked against the registry when read, not when imported
ProgramFormat = Annotated[str, BeforeValidator(_program_format)]
LoaderRuntime = Annotated[str, BeforeValidator(_loader_name)]
_CONTENT_TYPES = {
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".md": "text/markdown; charset=utf-8",
    ".safetensors": "application/octet-stream",
    ".pt2": "application/zip",  # a torch.export archive is a zip file
    ".onnx": "application/octet-stream",
    ".model": "application/octet-stream",  # a sentencepiece tokenizer
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Model):
    """One file of the export, relative to the export's root."""

    path: str = Field(description="relative POSIX path inside the export: no '..', no absolute part, no backslash")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    content_type: str

    @field_validator("path")
    @classmethod
    def _inside_the_export(cls, value: str) -> str:
        try:
            check_relative_path(value, "path")
        except UnsafeFile as exc:
            raise ValueError(str(exc).removeprefix("path: ")) from None
        if value == MANIFEST_NAME:
            raise ValueError(f"{value!r} is the manifest itself; it lists the other files")
        return value


class Program(_Model):
    """A runnable program of the model (or why there is none in that format)."""

    format: ProgramFormat
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
    tolerance_reason: str | None = Field(None, description="how the tolerance was chosen (absent in older exports)")


class TaskRef(_Model):
    """The task whose model this is: a built-in name or 'pkg.module:factory', with its arguments."""

    name: str
    args: dict[str, Any] = {}


class InputSpec(_Model):
    """One named input: an example's shape (batch dimension left out) and its dtype."""

    shape: list[int]
    dtype: str = "float32"
    variable_dims: list[int] = Field(
        [], description="positions in `shape` that may be shorter in a batch (a sequence length up to shape[d])"
    )

    def fits(self, shape: list[int] | tuple[int, ...]) -> bool:
        """Whether an example shaped `shape` (batch dimension left out) is one this input accepts."""
        if len(shape) != len(self.shape):
            return False
        return all(
            1 <= got <= want if d in self.variable_dims else got == want for d, (got, want) in enumerate(zip(shape, self.shape))
        )


class TextInput(_Model):
    """An export that takes text: the tokenizer folder (files listed with checksums) and how it pads and truncates."""

    tokenizer: str = Field(description="folder inside the export written by the tokenizer's save_pretrained()")
    max_length: int = Field(ge=1, description="tokens per text at most (texts are truncated to it)")
    input_names: list[str] = Field(description="the tokenizer outputs the model takes, e.g. input_ids, attention_mask")
    labels: list[str] | None = Field(
        None, description="a text classifier's class names, in the order of its logits; None for an embedder"
    )


class Architecture(_Model):
    """How the loader rebuilds the module the weights belong to, from the task's architecture."""

    prune_technique: str | None = None
    layer_widths: dict[str, int] | None = None
    pruning_history: list[list[Any]] | None = Field(
        None, description="Torch-Pruning history, replayed on the task's architecture"
    )
    encoder_structure: dict[str, list[Any]] | None = Field(
        None, description="transformer pruning: the teacher's layers, heads and FFN neurons kept, replayed on its architecture"
    )
    quantize_technique: str | None = None
    weights_format: Literal["float", "bf16", "fp16", "int8_fx_static", "int8_dynamic"]
    input_shape: list[int] = Field(description="one example's shape (the batch dimension left out); [] for named inputs")
    input_dtype: str = "float32"
    named_inputs: dict[str, "InputSpec"] | None = Field(
        None, description="for a model fed named tensors (input_ids, attention_mask, ...): each one's shape and dtype"
    )
    teacher_fingerprint: str = Field(description="SHA-256 of the teacher's tensors the candidate was rebuilt from")
    text: TextInput | None = Field(None, description="set when the model takes text through a tokenizer shipped beside it")


class ServingRuntime(_Model):
    """The runtime the trial built, measured and priced the candidate on, and how to serve it the same way."""

    name: RuntimeName
    library: str = Field(description="the library that runs it: torch or onnxruntime")
    version: str | None
    program: str | None = Field(None, description="the file this runtime serves (None: the safetensors weights)")
    loader_runtime: LoaderRuntime = Field(
        description="`load(..., runtime=...)` that serves it as measured"
    )
    settings: dict[str, Any] = {}
    startup_seconds: float | None = Field(None, description="cold start the trial measured (compile or session + first batch)")


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
    serving_batch_size: int | None = Field(
        None, ge=1, description="the batch the candidate was measured and priced at: Serve batches requests up to it, "
        "and `load(...)` runs larger inputs in chunks of it (absent in exports written before it was recorded)",
    )  # fmt: skip


class LoadQuantization(_Model):
    """The quantization `load` applies to the exported float weights: the trial's quantize stage, re-applied."""

    technique: str = Field(description="the trial's quantize step (its technique name in the record)")
    method: Literal["weight_only", "dynamic_int8", "fake_int4", "half"] = Field(
        description="weight_only: int8/int4 weight-only Linear kernels; dynamic_int8: torch.ao dynamic int8 Linear "
        "(int8 activations per batch); fake_int4: float weights rounded to the int4 grid; half: bf16/fp16 weights"
    )
    bits: int
    int8_activations: Literal["float", "dynamic"] | None = None
    group_size: int | None = Field(None, ge=1, description="int4: weights per quantization group")
    lm_head_bits: int | None = Field(None, description="the output head's width (None: as bits)")
    dtype: Literal["bf16", "fp16"] | None = None


class GenerationSpec(_Model):
    """A decoder LLM's export: a Hugging Face folder of float weights and its tokenizer, what load applies, the limits."""

    model_dir: str = Field(description="Hugging Face folder: AutoModelForCausalLM.from_pretrained(it) loads the weights")
    tokenizer: str = Field(description="folder the tokenizer's save_pretrained() wrote")
    weights_dtype: Literal["float32"] = "float32"
    quantization: LoadQuantization | None = Field(None, description="applied at load, after the float weights load")
    context_tokens: int = Field(ge=2, description="the model's context (max_position_embeddings)")
    max_new_tokens_limit: int = Field(ge=1, description="the most tokens one answer may have")
    prompt_tokens_limit: int = Field(ge=1, description="the most tokens one prompt may have: context less max_new_tokens_limit")
    default_max_new_tokens: int = Field(ge=1)
    add_special_tokens: bool = Field(True, description="whether prompts are tokenized with the tokenizer's special tokens")
    eos_token_ids: list[int] = []
    decoding: Literal["greedy"] = "greedy"
    batching: Literal["one_at_a_time"] = Field(
        "one_at_a_time", description="prompts are decoded one at a time, each with its own KV cache"
    )

    @field_validator("model_dir", "tokenizer")
    @classmethod
    def _inside_the_export(cls, value: str) -> str:
        try:
            check_relative_path(value, "folder")
        except UnsafeFile as exc:
            raise ValueError(str(exc).removeprefix("folder: ")) from None
        return value


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
    default_runtime: LoaderRuntime
    default_runtime_reason: str
    serving_runtime: ServingRuntime | None = Field(None, description="absent in exports written before runtimes were searched")
    serve_config: str
    notes: list[str] = []
    versions: dict[str, str | None]
    files: list[FileEntry] = Field(max_length=MAX_FILES)
    generation: GenerationSpec | None = Field(None, description="set for a decoder LLM (load(...).generate); absent otherwise")

    @model_validator(mode="after")
    def _each_file_listed_once(self) -> "Manifest":
        seen: dict[str, str] = {}
        for entry in self.files:
            folded = entry.path.casefold()  # on a case-insensitive disk these would overwrite each other
            if folded in seen:
                raise ValueError(f"files: {entry.path!r} is listed twice (as {seen[folded]!r})")
            seen[folded] = entry.path
        return self

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
    """Check every file the manifest lists: inside root, no symlink, same size, then same SHA-256.

    Sizes are compared before hashing, so a huge file is refused without being read.
    Raises UnsafeExport for a path or file that is not safe to read, VerificationError for a mismatch.
    """
    for entry in manifest.files:
        path = export_path(root, entry.path)
        if not path.is_file():
            if path.exists():
                raise UnsafeExport(f"{path}: the manifest lists a file here, but this is not a plain file; refused")
            raise VerificationError(f"{path}: missing; the manifest lists it ({entry.size_bytes} bytes)")
        size = path.stat().st_size
        if size != entry.size_bytes:
            raise VerificationError(
                f"{entry.path}: refused: {size:,} bytes where the manifest lists {entry.size_bytes:,}: "
                "the file was modified, truncated or replaced (not hashed)"
            )
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise VerificationError(
                f"{entry.path}: refused: SHA-256 {actual[:12]}… does not match the manifest's "
                f"{entry.sha256[:12]}… ({size} bytes): the file was modified"
            )


def export_path(root: Path, rel: str) -> Path:
    """root/rel for a manifest path, refusing anything that would lead outside root or through a symlink."""
    try:
        return join_inside(root, rel, "manifest files[].path")
    except UnsafeFile as exc:
        raise UnsafeExport(str(exc)) from None


def parse_manifest(text: str | bytes, source: str) -> Manifest:
    """Validate a manifest's JSON; anything malformed or unsafe is UnsafeExport naming `source` and the field."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise UnsafeExport(f"{source}: {len(text):,} bytes, more than a manifest's {MAX_MANIFEST_BYTES:,}; refused")
    try:
        manifest = Manifest.model_validate_json(text)
    except ValidationError as exc:
        raise UnsafeExport(f"{source}: not a valid Hedgerow manifest: {_first_error(exc)}") from None
    listed = {entry.path for entry in manifest.files}
    named = {"weights": manifest.weights, "serve_config": manifest.serve_config}
    named.update({f"programs.{p.format}.file": p.file for p in manifest.programs if p.file})
    if manifest.generation is not None:
        named["generation.model_dir"] = f"{manifest.generation.model_dir}/config.json"
    for field_name, path in named.items():
        if path not in listed:
            raise UnsafeExport(
                f"{source}: not a valid Hedgerow manifest: {field_name}: {path!r} is not one of the manifest's files"
            )
    return manifest


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    err = errors[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {str(err['msg']).removeprefix('Value error, ')}{more}"


def read_manifest(path: Path) -> Manifest:
    """Parse manifest.json; a missing file is a VerificationError, a malformed or unsafe one UnsafeExport."""
    if not path.exists() and not path.is_symlink():
        raise VerificationError(f"{path}: no manifest.json: not a Hedgerow export, or its upload never completed")
    try:
        check_regular_file(path, MAX_MANIFEST_BYTES)
    except UnsafeFile as exc:
        raise UnsafeExport(str(exc)) from None
    return parse_manifest(path.read_bytes(), str(path))
