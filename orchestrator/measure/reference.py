"""The teacher's throughput on this machine, measured once with care and kept: the figure trials scale by.

A trial's throughput is its interleaved ratio to the teacher (measured in the
trial, against the same background noise) times this reference. On a shared VM,
raw throughput taken in one process drifted by 9–31% between fresh processes
while the interleaved ratio stayed within 3% (bench/results/measure_stability.json),
and a drift of that size moves replica counts. Keeping one reference per host,
device, thread count, batch shape, teacher and torch build means every trial,
every resumed search and every later run on this machine prices against the same
figure. Delete the file (its path is in every trial record) to measure again.
"""

from __future__ import annotations

import fcntl
import json
import socket
import statistics
import time
from pathlib import Path
from typing import Callable, TypeVar

import torch
from pydantic import BaseModel
from torch import nn

from orchestrator.measure.metrics import DeviceInfo, device_info, time_batches
from orchestrator.safe_files import write_atomic
from orchestrator.tasks.cache import cache_dir, settings_key
from orchestrator.tasks.base import model_device
from orchestrator.tasks.batches import Inputs, batch_size, describe
from orchestrator.tasks.checkpoint import tensor_fingerprint

REFERENCE_VERSION = 1


class ReferenceThroughput(BaseModel):
    """The teacher's serving-batch throughput on one machine, with what it was measured on and how."""

    version: int = REFERENCE_VERSION
    throughput_sps: float  # median of the per-round medians
    rounds_sps: list[float]
    rounds: int
    repeats_per_round: int
    host: str
    device: DeviceInfo
    batch_shape: list[int] | dict[str, list[int]]
    teacher_fingerprint: str
    torch_version: str
    measured_at: str
    path: str


def reference_path(
    teacher: nn.Module, batch: Inputs, threads: int, root: Path | None = None, teacher_fingerprint: str | None = None
) -> tuple[Path, dict]:
    """Where this machine's reference for this teacher, batch and thread count lives, and the identity it is keyed by.

    Pass `teacher_fingerprint` where it is already known (the search computes it once) to skip hashing the weights.
    """
    identity = {
        "host": socket.gethostname(),
        "device": device_info(model_device(teacher)).model_dump(exclude={"threads"}),
        "threads": threads,
        "batch_shape": describe(batch),  # a list for one tensor (as before), {name: shape} for named inputs
        "batch_dtype": str(batch.dtype) if isinstance(batch, torch.Tensor) else {k: str(v.dtype) for k, v in sorted(batch.items())},
        "teacher_fingerprint": teacher_fingerprint or tensor_fingerprint(teacher),
        "torch_version": torch.__version__,
    }
    return (root or cache_dir() / "reference") / f"teacher-sps-{settings_key(identity)}.json", identity


def reference_throughput(
    teacher: nn.Module,
    batch: Inputs,
    threads: int,
    rounds: int = 9,
    repeats: int = 10,
    root: Path | None = None,
    teacher_fingerprint: str | None = None,
) -> ReferenceThroughput:
    """The kept reference for this machine, measuring it first (under a file lock, once per machine) if there is none."""
    torch.set_num_threads(threads)
    path, identity = reference_path(teacher, batch, threads, root, teacher_fingerprint)
    return kept_once(
        path, ReferenceThroughput, REFERENCE_VERSION, lambda: _measure(teacher, batch, threads, rounds, repeats, identity, path)
    )


Kept = TypeVar("Kept", bound=BaseModel)


def kept_once(path: Path, model: type[Kept], version: int, measure: Callable[[], Kept]) -> Kept:
    """The reference kept at `path`, or `measure()` written there first, under a file lock: concurrent trials on
    one host measure it once, the others wait and read it."""
    cached = read_kept(path, model, version)
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cached = read_kept(path, model, version)
        if cached is not None:
            return cached
        reference = measure()
        write_atomic(path, reference.model_dump_json(indent=1))
        return reference


def read_kept(path: Path, model: type[Kept], version: int) -> Kept | None:
    """A kept reference of the current version; None where it is missing, unreadable or of another version."""
    try:
        reference = model.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
    return reference if getattr(reference, "version", None) == version else None


def _measure(teacher: nn.Module, batch: Inputs, threads: int, rounds: int, repeats: int, identity: dict, path: Path) -> ReferenceThroughput:
    teacher.eval()
    time_batches(teacher, batch, repeats=1, warmup=5)
    rounds_sps = [batch_size(batch) / statistics.median(time_batches(teacher, batch, repeats, warmup=1)) for _ in range(rounds)]
    return ReferenceThroughput(
        throughput_sps=statistics.median(rounds_sps),
        rounds_sps=[round(r, 1) for r in rounds_sps],
        rounds=rounds,
        repeats_per_round=repeats,
        host=identity["host"],
        device=DeviceInfo(**identity["device"], threads=threads),
        batch_shape=identity["batch_shape"],
        teacher_fingerprint=identity["teacher_fingerprint"],
        torch_version=identity["torch_version"],
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        path=str(path),
    )
