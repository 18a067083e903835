"""Error types that map to the CLI's exit statuses (2: bad input, 1: anything else)."""

from __future__ import annotations

import re
import traceback
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class InputError(ValueError):
    """Bad input from the user: a config field, a path or an argument. Exit status 2.

    The message names the field or file and says what is expected.
    """


class UnsafeFile(InputError):
    """A file from elsewhere that is malformed or unsafe to use: a path outside its folder, a symlink,
    too large, truncated, or of the wrong type. Refused before anything is written; exit status 2.
    """


class UnsupportedOnDevice(RuntimeError):
    """A technique that this device cannot run (2:4 sparsity on a CPU, say)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0].strip()[:limit] if text else '(no message)'}"


def describe_error(exc: BaseException, limit: int = 400) -> str:
    """One line for trials.csv: the original exception's type and message (Ray's wrapper unwrapped)."""
    cause = getattr(exc, "cause", None)  # RayTaskError carries the exception the trial raised
    if isinstance(cause, BaseException):
        exc = cause
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = " ".join(_ANSI.sub("", str(exc)).split())
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return f"{type(exc).__name__}: {message}{where}"
