"""Load an export (a folder or an s3:// URI) back, verified file by file, and run batches through it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import torch
from torch import nn

from orchestrator.deploy._errors import UnsafeExport
from orchestrator.deploy._inputs import check_named_batch
from orchestrator.deploy.manifest import MANIFEST_NAME, Manifest, read_manifest, verify_files
from orchestrator.errors import InputError
from orchestrator.safe_files import check_relative_path, join_inside
from orchestrator.tasks.batches import run, to_device

Runtime = Literal["auto", "torch", "torch_export", "compiled", "onnx"]
RUNTIMES = ("auto", "torch", "torch_export", "compiled", "onnx")


@dataclass
class LoadedModel:
    """An export, loaded: `predict(batch)` runs a batch of inputs and returns the outputs (float32, on CPU)."""

    manifest: Manifest
    root: Path
    runtime: str
    module: nn.Module
    device: torch.device
    _tokenizer: Any = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape (without the batch dimension)."""
        return tuple(self.manifest.architecture.input_shape)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of a list of strings, tokenized by the tokenizer shipped in the export (one row per text)."""
        spec = self.manifest.architecture.text
        if spec is None:
            raise ValueError("this export takes tensors, not text: use predict()")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("expected a list of strings")
        if not texts:
            return torch.empty(0)
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.root / spec.tokenizer)
        encoded = self._tokenizer(
            list(texts), padding="longest", truncation=True, max_length=spec.max_length, return_tensors="pt"
        )
        return self.predict({name: encoded[name].long() for name in spec.input_names})

    @torch.inference_mode()
    def predict(self, batch: Any) -> torch.Tensor:
        """Outputs for a batch shaped (N, *input_shape), or for {name: (N, *shape)} where the model takes named inputs."""
        arch = self.manifest.architecture
        if arch.text is not None and isinstance(batch, (list, tuple)) and all(isinstance(t, str) for t in batch):
            return self.embed(batch)
        if arch.named_inputs:
            if not isinstance(batch, Mapping) or set(batch) != set(arch.named_inputs):
                got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
                raise ValueError(f"expected named inputs {sorted(arch.named_inputs)}, got {got}")
            named = {name: torch.as_tensor(batch[name], dtype=getattr(torch, spec.dtype)) for name, spec in arch.named_inputs.items()}
            check_named_batch(named, arch.named_inputs)
            return run(self.module, to_device(named, self.device)).float().cpu()
        batch = torch.as_tensor(batch, dtype=getattr(torch, arch.input_dtype))
        if tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected a batch shaped (N, {', '.join(map(str, self.input_shape))}), got {tuple(batch.shape)}"
            )
        return self.module(batch.to(self.device)).float().cpu()


def _load_tokenizer(folder: Path) -> Any:
    """The export's own tokenizer (its files were verified against the manifest); never fetched from a hub."""
    from orchestrator.tasks.text.encoder import quiet_loading, require_transformers

    with quiet_loading():
        return require_transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _cache_root() -> Path:
    from orchestrator.tasks._cache import cache_dir

    return cache_dir() / "exports"


def fetch(path_or_uri: str | Path, endpoint_url: str | None = None, cache: Path | None = None) -> tuple[Path, Manifest]:
    """A local folder holding the export, verified against its manifest; S3 exports are downloaded first."""
    text = str(path_or_uri)
    if text.startswith("s3://"):
        from orchestrator.deploy.s3 import S3Settings, download, parse_s3_uri

        location = parse_s3_uri(text.removesuffix("/" + MANIFEST_NAME), field_name="model path")
        root = join_inside(cache or _cache_root(), f"{location.bucket}/{location.key() or '_root'}", "model path")
        manifest = download(location, root, S3Settings(endpoint_url=endpoint_url))
    else:
        root = Path(text).expanduser()
        if root.name == MANIFEST_NAME:
            root = root.parent
        if not root.is_dir():
            raise InputError(
                f"{root}: no such export folder (expected the folder holding manifest.json, or s3://bucket/prefix/<run>/<trial>)"
            )
        manifest = read_manifest(root / MANIFEST_NAME)
    verify_files(root, manifest)
    return root, manifest


def load(
    path_or_uri: str | Path,
    endpoint_url: str | None = None,
    runtime: Runtime = "auto",
    device: str = "cpu",
    cache: Path | None = None,
) -> LoadedModel:
    """Load an export: every file's SHA-256 is checked against the manifest before anything is read.

    runtime: "auto" (the manifest's default_runtime on the CPU, "torch" elsewhere), "torch"
    (the safetensors weights in the task's architecture: needs the task importable),
    "torch_export" (model.pt2), "compiled" (the .pt2 program, torch.compile'd with inductor at the
    serving batch, as the trial measured it; PT2E int8 programs import torchao first) or "onnx"
    (model.onnx, or model.int8.onnx for int8 candidates, under ONNX Runtime); the programs were
    exported on the CPU and run there only.
    device: "cpu", "cuda", or "auto" (cuda where there is one and the weights run there).
    A tampered, truncated or missing file raises VerificationError.
    """
    if runtime not in RUNTIMES:
        raise InputError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    root, manifest = fetch(path_or_uri, endpoint_url, cache)
    cpu_only = manifest.architecture.weights_format.startswith("int8")  # torch.ao int8 kernels are CPU kernels
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and not cpu_only else "cpu"
    dev = torch.device(device)
    if cpu_only and dev.type != "cpu":
        raise InputError(
            f"device {device!r}: this export's int8 weights (torch.ao) run on the CPU only; load it with device='cpu'"
        )
    chosen = manifest.default_runtime if runtime == "auto" else runtime
    if dev.type != "cpu" and chosen != "torch":
        if runtime != "auto":
            raise InputError(
                f"runtime {runtime!r} runs on the CPU only (its programs were exported there); "
                f"use runtime='torch' (the weights) on {device}"
            )
        chosen = "torch"  # a .pt2 exported on the CPU pins its device; the weights load on any device
    module = _module(root, manifest, chosen, dev)
    return LoadedModel(manifest=manifest, root=root, runtime=chosen, module=module, device=dev)


def _program_file(manifest: Manifest, formats: tuple[str, ...], runtime: str) -> str:
    for program in manifest.programs:
        if program.format in formats and program.written and program.file:
            return program.file
    reasons = (
        "; ".join(f"{p.format}: {p.reason}" for p in manifest.programs if p.format in formats) or "none was exported"
    )
    written = ["torch"] + sorted({_RUNTIME_OF[p.format] for p in manifest.programs if p.written})
    raise InputError(
        f"runtime {runtime!r}: this export has no such program ({reasons}); available runtimes: {', '.join(written)}"
    )


_RUNTIME_OF = {
    "torch_export": "torch_export", "torch_export_pt2e_int8": "compiled", "onnx": "onnx", "onnx_int8_qdq": "onnx",
    "onnx_int8_dynamic": "onnx",
}  # fmt: skip


def _module(root: Path, manifest: Manifest, runtime: str, device: torch.device) -> nn.Module:
    if runtime == "torch_export":
        name = _program_file(manifest, ("torch_export",), runtime)
        return torch.export.load(str(root / name)).module().to(device)
    if runtime == "compiled":
        return _compiled(root, manifest, device)
    if runtime == "onnx":
        from orchestrator.deploy.programs import OnnxModule

        name = _program_file(manifest, ("onnx_int8_qdq", "onnx_int8_dynamic", "onnx"), runtime)
        check_onnx_external_data(root, name, manifest)
        return OnnxModule(root / name)
    from orchestrator.deploy.weights import load_module
    from orchestrator.tasks.registry import load_task

    task = load_task(manifest.task.name, manifest.task.args, field="manifest task.name")
    return load_module(task, manifest.architecture, root / manifest.weights).to(device)


def _compiled(root: Path, manifest: Manifest, device: torch.device) -> nn.Module:
    """The .pt2 program compiled by inductor for the serving batch, as the trial served it (compiled now, not lazily)."""
    from orchestrator.deploy.weights import example_inputs
    from orchestrator.runtimes.compiled import compile_program

    name = _program_file(manifest, ("torch_export_pt2e_int8", "torch_export"), "compiled")
    if any(p.format == "torch_export_pt2e_int8" and p.file == name for p in manifest.programs):
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops the program calls)
    program = torch.export.load(str(root / name)).module().to(device)
    settings = manifest.serving_runtime.settings if manifest.serving_runtime else {}
    static_batch = int(settings.get("static_batch") or 1)
    sequence_inputs = tuple(settings.get("sequence_inputs") or ())
    example = example_inputs(manifest.architecture, n=static_batch)
    return compile_program(program, example, sequence_inputs, freezing=bool(settings.get("freezing", True)))[0]


def check_onnx_external_data(root: Path, name: str, manifest: Manifest) -> None:
    """Refuse an ONNX file whose tensors point at data outside the export's verified files (before ONNX Runtime reads any)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    listed = {entry.path for entry in manifest.files}
    model = onnx.load(str(root / name), load_external_data=False)
    folder = Path(name).parent.as_posix()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = ExternalDataInfo(tensor).location
        rel = location if folder == "." else f"{folder}/{location}"
        try:
            check_relative_path(location, f"{name}: tensor {tensor.name!r} external data location")
        except InputError as exc:
            raise UnsafeExport(str(exc)) from None
        if rel not in listed:
            raise UnsafeExport(
                f"{name}: tensor {tensor.name!r} reads external data from {location!r}, which is not one of the "
                "manifest's verified files; refused"
            )


def verify(path_or_uri: str | Path, endpoint_url: str | None = None) -> Manifest:
    """Check an export's files against its manifest without loading a model."""
    with tempfile.TemporaryDirectory() as tmp:
        _, manifest = fetch(path_or_uri, endpoint_url, Path(tmp) if str(path_or_uri).startswith("s3://") else None)
    return manifest
