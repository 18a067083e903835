"""One timing at a time per machine: while a measurement runs, other work on the machine steps aside.

Two trials of a search share a machine's cores, memory bandwidth and last-level cache. Interleaving a
candidate with the teacher cancels noise that slows both alike, not a neighbour that slows one more
than the other: a distilling neighbour slowed the fp32 teacher more than an int8 candidate, and the
same recipe's ratio to the teacher moved from 2.56x to 3.24x between two searches. So a measurement
holds this machine's lock exclusively (`measuring_alone`), and the heavy loops (a distillation step, a
chunk of a pass over a split) take it shared around each unit of work (`step_aside`): a neighbour
finishes the step it is in, then waits until the measurement is done. A turnstile gives the
measurement priority, so a neighbour's stream of short steps cannot starve it.

The lock is a pair of files in the system's temp folder (one machine, every process of one user);
with nobody measuring, `step_aside` costs two uncontended `flock` calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

_state = threading.local()
_process_depth = 0  # measurements this process holds: its own work must not wait for itself


def lock_dir() -> Path:
    """The folder holding this machine's measurement lock: $HEDGEROW_QUIET_DIR, else the temp folder."""
    return Path(os.environ.get("HEDGEROW_QUIET_DIR") or tempfile.gettempdir())


def _paths() -> tuple[Path, Path]:
    root = lock_dir()
    user = os.getuid() if hasattr(os, "getuid") else 0
    return root / f"hedgerow-{user}-turnstile.lock", root / f"hedgerow-{user}-measuring.lock"


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def measuring_alone() -> Iterator[None]:
    """Hold the machine for a measurement: no other process's stepping-aside work runs inside the block."""
    global _process_depth
    if getattr(_state, "inside", False):  # measuring inside one's own step: waiting for oneself would never end
        yield
        return
    if _process_depth:
        _process_depth += 1
        try:
            yield
        finally:
            _process_depth -= 1
        return
    turnstile_path, lock_path = _paths()
    turnstile, lock = _open(turnstile_path), _open(lock_path)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)  # new steps stop at the turnstile...
        fcntl.flock(lock, fcntl.LOCK_EX)  # ...and the step in flight finishes
        _process_depth += 1
        try:
            yield
        finally:
            _process_depth -= 1
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    finally:
        os.close(lock)
        os.close(turnstile)


@contextlib.contextmanager
def step_aside() -> Iterator[None]:
    """Run one unit of heavy work (a training step, a chunk of a pass) unless a measurement holds the machine."""
    if _process_depth or getattr(_state, "inside", False):
        yield
        return
    turnstile_path, lock_path = _paths()
    turnstile, lock = _open(turnstile_path), _open(lock_path)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_SH)
        _state.inside = True
        try:
            yield
        finally:
            _state.inside = False
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
        os.close(turnstile)
