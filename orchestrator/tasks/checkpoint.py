"""Safe weight files: safetensors with a SHA-256 sidecar; never unpickle arbitrary objects."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from orchestrator.errors import UnsafeFile
from orchestrator.safe_files import MAX_JSON_BYTES, atomic_target, parse_json, read_text, write_atomic


class CheckpointError(UnsafeFile):
    """A weight file that is missing, tampered with, or not plain tensors (bad input: exit status 2)."""


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_checkpoint(state_dict: dict[str, torch.Tensor], path: Path, metadata: dict) -> None:
    """Write tensors as safetensors plus a JSON sidecar holding metadata and the file's SHA-256.

    Both are written to temporary names and renamed, so a crash leaves no half-file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp))
        sidecar = {"sha256": sha256_file(tmp), "metadata": metadata}
        write_atomic(_sidecar(path), json.dumps(sidecar, indent=2, sort_keys=True))


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a checkpoint, refusing tampered or pickled files.

    `.safetensors` files must match the SHA-256 in their sidecar. `.pt`/`.pth`
    files are read with `torch.load(weights_only=True)`, which refuses pickled
    modules and other arbitrary objects.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"{path}: a symlink to nothing; expected a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix in {".pt", ".pth", ".bin"}:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
            raise CheckpointError(
                f"{path}: refused: it is not a plain state_dict of tensors (a pickled object?). "
                "Save `model.state_dict()` instead of the model."
            ) from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: refused: expected a dict of tensors (a state_dict)")
        return state, {}
    sidecar_path = _sidecar(path)
    if not sidecar_path.is_file():
        raise CheckpointError(f"{sidecar_path}: missing checksum sidecar; cannot verify {path.name}")
    try:
        sidecar = parse_json(read_text(sidecar_path, MAX_JSON_BYTES), str(sidecar_path))
    except UnsafeFile as exc:
        raise CheckpointError(f"{exc}; cannot verify {path.name}") from None
    metadata = sidecar.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{sidecar_path}: field 'metadata': expected an object, got {type(metadata).__name__}")
    actual = sha256_file(path)
    if actual != sidecar.get("sha256"):
        raise CheckpointError(
            f"{path}: refused: SHA-256 {actual[:12]}… does not match the recorded "
            f"{str(sidecar.get('sha256'))[:12]}… (the file was modified or truncated)"
        )
    try:
        return load_file(path), metadata
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: refused: not a valid safetensors file ({exc})") from exc


def tensor_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over a module's tensors (names, dtypes, shapes, bytes): equal iff the weights are equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()
