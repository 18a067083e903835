"""Load an export (a folder or an s3:// URI) back, verified file by file, and run batches through it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from orchestrator.deploy._errors import UnsafeExport
from orchestrator.deploy._inputs import check_named_batch
from orchestrator.deploy.manifest import MANIFEST_NAME, PT2_PROGRAM, Manifest, read_manifest, verify_files
from orchestrator.errors import InputError
from orchestrator.runtimes import REGISTRY, ExportView
from orchestrator.safe_files import check_relative_path, join_inside
from orchestrator.tasks.batches import report_progress, run, run_in_chunks, to_device



def runtimes() -> tuple[str, ...]:
    """What `load(runtime=...)` takes: auto, a registered runtime (older names "torch" and "onnx" too), torch_export."""
    return ("auto", *REGISTRY.names, PT2_PROGRAM)

DEFAULT_BATCH_SIZE = 64  # for exports that do not record the serving batch they were priced at


def serving_batch_size(manifest: Manifest) -> int:
    """The batch the candidate was measured and priced at, from the manifest (older exports: their metrics, else 64)."""
    recorded = manifest.deployment.serving_batch_size or manifest.metrics.get("serving_batch_size")
    return int(recorded) if recorded else DEFAULT_BATCH_SIZE


@dataclass
class LoadedModel:
    """An export, loaded: `predict(batch)` runs a batch of inputs and returns the outputs (float32, on CPU).

    Inputs of any size run `batch_size` examples at a time (the serving batch the candidate was priced at, unless
    `load` was given another): memory follows that batch, never the number of inputs.
    """

    manifest: Manifest
    root: Path
    runtime: str
    module: nn.Module
    device: torch.device
    batch_size: int = DEFAULT_BATCH_SIZE
    _tokenizer: Any = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape (without the batch dimension)."""
        return tuple(self.manifest.architecture.input_shape)

    @property
    def labels(self) -> list[str] | None:
        """A text classifier's class names, in the order of its logits (None for any other export)."""
        spec = self.manifest.architecture.text
        return spec.labels if spec is not None else None

    @torch.inference_mode()
    def text_outputs(self, texts: Sequence[str]) -> torch.Tensor:
        """The model's raw outputs for a list of strings (embeddings, or a classifier's logits), one row per text,
        tokenized by the tokenizer shipped in the export, `batch_size` texts at a time (each chunk padded to its own
        longest text: the attention mask hides padding, so the outputs are one batch's up to float rounding)."""
        spec = self.manifest.architecture.text
        if spec is None:
            raise ValueError("this export takes tensors, not text: use predict()")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("expected a list of strings")
        if not texts:
            return torch.empty(0)
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(self.root / spec.tokenizer)
        outputs = []
        for start in range(0, len(texts), self.batch_size):
            encoded = self._tokenizer(
                list(texts[start : start + self.batch_size]), padding="longest", truncation=True,
                max_length=spec.max_length, return_tensors="pt",
            )  # fmt: skip
            named = self._checked_named({name: encoded[name].long() for name in spec.input_names})
            outputs.append(run(self.module, to_device(named, self.device)).float().cpu())
            report_progress(min(start + self.batch_size, len(texts)), len(texts))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)

    def generate(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
        """Each prompt's greedy continuation (the new text only), from a decoder LLM's export.

        Prompts are decoded one at a time with a KV cache, so a prompt's text never depends on the others; every
        prompt is checked first (a list of strings, each within the export's prompt limit) and `max_new_tokens`
        (default: the manifest's default_max_new_tokens, 64 at most) must be from 1 to its max_new_tokens_limit:
        InputError otherwise, naming the limit. Decoding stops early at an end-of-sequence token.
        """
        return [self._tokenizer_of().decode(ids, skip_special_tokens=True) for ids in self.generate_ids(prompts, max_new_tokens)]

    def generate_ids(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[list[int]]:
        """The new token ids `generate` decodes into text, one list per prompt."""
        from orchestrator.deploy.generation import check_max_new_tokens, check_prompts, encode_prompts, greedy_ids

        spec = self.manifest.generation
        if spec is None:
            raise InputError("this export is not a text generator (no generation section in its manifest): use predict()")
        new = check_max_new_tokens(spec.default_max_new_tokens if max_new_tokens is None else max_new_tokens,
                                   spec.max_new_tokens_limit)  # fmt: skip
        encoded = encode_prompts(self._tokenizer_of(), check_prompts(prompts), spec.prompt_tokens_limit, spec.add_special_tokens)
        hf = self.module.hf
        return [greedy_ids(hf, ids, new, spec.eos_token_ids) for ids in encoded]

    def _tokenizer_of(self) -> Any:
        if self._tokenizer is None:
            from orchestrator.deploy.llm_load import load_tokenizer

            assert self.manifest.generation is not None
            self._tokenizer = load_tokenizer(self.root / self.manifest.generation.tokenizer)
        return self._tokenizer

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of a list of strings (one row per text), from an embedding export."""
        if self.labels is not None:
            raise ValueError("this export classifies text: use classify() or predict()")
        return self.text_outputs(texts)

    def classify(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Each text's label, its probability and every class's, from a text classifier's export.

        One dict per text, as Hugging Face's text-classification pipeline with top_k=None would give it:
        {"label": "files", "score": 0.93, "probabilities": {"files": 0.93, "sockets": 0.04, "threads": 0.03}}.
        """
        labels = self.labels
        if labels is None:
            raise ValueError("this export does not classify text (it has no class names): use embed() or predict()")
        return labeled(self.text_outputs(texts), labels) if texts else []

    @torch.inference_mode()
    def predict(self, batch: Any) -> Any:
        """Outputs for a batch shaped (N, *input_shape), or for {name: (N, *shape)} where the model takes named inputs.

        An export that takes text also takes a list of strings: an embedder returns their embeddings, a classifier
        each text's label and probabilities (see `classify`), a decoder LLM their greedy continuations (`generate`);
        token-id batches return the raw outputs (logits).
        """
        arch = self.manifest.architecture
        strings = isinstance(batch, (list, tuple)) and all(isinstance(t, str) for t in batch)
        if getattr(self.manifest, "generation", None) is not None and strings:
            return self.generate(batch)
        if arch.text is not None and strings:
            return self.classify(batch) if self.labels is not None else self.embed(batch)
        return self._run_named(batch) if arch.named_inputs else self._run_tensor(batch)

    def _checked_named(self, batch: Any) -> dict[str, torch.Tensor]:
        """Named inputs as the export takes them (names, dtypes, shapes), else ValueError saying what is expected."""
        arch = self.manifest.architecture
        if not arch.named_inputs:
            raise ValueError("this export takes one tensor, not named inputs")
        if not isinstance(batch, Mapping) or set(batch) != set(arch.named_inputs):
            got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"expected named inputs {sorted(arch.named_inputs)}, got {got}")
        named = {name: torch.as_tensor(batch[name], dtype=getattr(torch, spec.dtype)) for name, spec in arch.named_inputs.items()}
        check_named_batch(named, arch.named_inputs)
        return named

    def _run_named(self, batch: Any) -> torch.Tensor:
        return run_in_chunks(self.module, self._checked_named(batch), self.batch_size, device=self.device)

    def _run_tensor(self, batch: Any) -> torch.Tensor:
        arch = self.manifest.architecture
        batch = torch.as_tensor(batch, dtype=getattr(torch, arch.input_dtype))
        if tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(
                f"expected a batch shaped (N, {', '.join(map(str, self.input_shape))}), got {tuple(batch.shape)}"
            )
        return run_in_chunks(self.module, batch, self.batch_size, device=self.device)


def labeled(logits: torch.Tensor, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Each row of class logits as {"label", "score", "probabilities": {class: p}} (softmax over the classes)."""
    results = []
    for row in torch.softmax(logits.float(), dim=-1).tolist():
        best = max(range(len(row)), key=row.__getitem__)
        results.append({"label": labels[best], "score": row[best], "probabilities": dict(zip(labels, row))})
    return results


def _load_tokenizer(folder: Path) -> Any:
    """The export's own tokenizer (its files were verified against the manifest); never fetched from a hub."""
    from orchestrator.tasks.text.encoder import quiet_loading, require_transformers

    with quiet_loading():
        return require_transformers().AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _cache_root() -> Path:
    from orchestrator.tasks.cache import cache_dir

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
    runtime: str = "auto",
    device: str = "cpu",
    cache: Path | None = None,
    batch_size: int | None = None,
) -> LoadedModel:
    """Load an export: every file's SHA-256 is checked against the manifest before anything is read.

    runtime: "auto" (the manifest's default_runtime on the CPU, "eager" elsewhere), a registered
    runtime's name ("eager": the safetensors weights in the task's architecture, needs the task
    importable; "compiled": the .pt2 program, torch.compile'd with inductor at the serving batch, as
    the trial measured it; "onnxruntime": model.onnx, or model.int8.onnx for int8 candidates), or
    "torch_export" (model.pt2 run by torch); older names "torch" and "onnx" still work. The programs
    were exported on the CPU and run there only.
    device: "cpu", "cuda", or "auto" (cuda where there is one and the weights run there).
    batch_size: examples the model runs at once, whatever `predict` is given (None: the serving batch the
    candidate was priced at); memory follows it.
    A tampered, truncated or missing file raises VerificationError.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise InputError(f"batch_size: expected a whole number of examples, at least 1, got {batch_size!r}")
    if runtime not in ("auto", PT2_PROGRAM):
        try:
            runtime = REGISTRY.canonical(runtime)
        except ValueError:
            raise InputError(f"runtime: expected one of {', '.join(runtimes())}, got {runtime!r}") from None
    root, manifest = fetch(path_or_uri, endpoint_url, cache)
    if manifest.generation is not None:
        return _load_llm(root, manifest, runtime, device, batch_size)
    cpu_only = manifest.architecture.weights_format.startswith("int8")  # torch.ao int8 kernels are CPU kernels
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and not cpu_only else "cpu"
    dev = torch.device(device)
    if cpu_only and dev.type != "cpu":
        raise InputError(
            f"device {device!r}: this export's int8 weights (torch.ao) run on the CPU only; load it with device='cpu'"
        )
    weights = REGISTRY.weights()  # eager: the weights, which load on any device
    chosen = manifest.default_runtime if runtime == "auto" else runtime
    if dev.type != "cpu" and chosen != weights:
        if runtime != "auto":
            raise InputError(
                f"runtime {runtime!r} runs on the CPU only (its programs were exported there); "
                f"use runtime='torch' (= {weights!r}: the weights) on {device}"
            )
        chosen = weights  # a .pt2 exported on the CPU pins its device; the weights load on any device
    module = _module(root, manifest, chosen, dev)
    return LoadedModel(
        manifest=manifest, root=root, runtime=chosen, module=module, device=dev,
        batch_size=batch_size or serving_batch_size(manifest),
    )  # fmt: skip


def _load_llm(root: Path, manifest: Manifest, runtime: str, device: str, batch_size: int | None) -> LoadedModel:
    """A decoder LLM's export: its Hugging Face folder loaded by transformers, quantized as the manifest says."""
    from orchestrator.deploy.llm_load import load_llm_module

    weights = REGISTRY.weights()
    if runtime not in ("auto", weights):
        raise InputError(f"runtime {runtime!r}: a decoder LLM's export is served from its weights; use runtime={weights!r} or 'auto'")
    if device == "auto":
        quantized = manifest.generation is not None and manifest.generation.quantization is not None
        device = "cuda" if torch.cuda.is_available() and not quantized else "cpu"
    dev = torch.device(device)
    module = load_llm_module(root, manifest, dev)
    return LoadedModel(
        manifest=manifest, root=root, runtime=weights, module=module, device=dev,
        batch_size=batch_size or serving_batch_size(manifest),
    )  # fmt: skip


def _program_file(manifest: Manifest, formats: tuple[str, ...], runtime: str) -> tuple[str, str]:
    """(format, file) of the first written program among `formats`; InputError naming the runtimes this export has."""
    for program in manifest.programs:
        if program.format in formats and program.written and program.file:
            return program.format, program.file
    reasons = (
        "; ".join(f"{p.format}: {p.reason}" for p in manifest.programs if p.format in formats) or "none was exported"
    )
    written = [REGISTRY.weights()] + sorted({_runtime_of(p.format) for p in manifest.programs if p.written})
    raise InputError(
        f"runtime {runtime!r}: this export has no such program ({reasons}); available runtimes: {', '.join(written)}"
    )


def _runtime_of(fmt: str) -> str:
    """The runtime that loads a program format: the .pt2 loader, or the registered runtime listing it."""
    if fmt == PT2_PROGRAM:
        return PT2_PROGRAM
    return next(r.name for r in REGISTRY if fmt in r.program_formats)


def _module(root: Path, manifest: Manifest, runtime: str, device: torch.device) -> nn.Module:
    if runtime == PT2_PROGRAM:
        _, name = _program_file(manifest, (PT2_PROGRAM,), runtime)
        return torch.export.load(str(root / name)).module().to(device)
    from orchestrator.deploy.weights import example_inputs

    view = ExportView(
        root=root,
        program_file=lambda formats: _program_file(manifest, formats, runtime),
        settings=manifest.serving_runtime.settings if manifest.serving_runtime else {},
        example=lambda n: example_inputs(manifest.architecture, n=n),
        weights=lambda: _weights(root, manifest),
        check_file=lambda name: check_onnx_external_data(root, name, manifest),
        check_listed=manifest.file,  # VerificationError naming a file the manifest does not list
    )
    return REGISTRY.get(runtime).load(view, device)


def _weights(root: Path, manifest: Manifest) -> nn.Module:
    """The safetensors weights in the task's architecture (the task must be importable here)."""
    from orchestrator.deploy.weights import load_module
    from orchestrator.tasks.registry import load_task

    task = load_task(manifest.task.name, manifest.task.args, field="manifest task.name")
    return load_module(task, manifest.architecture, root / manifest.weights)


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
