"""Error types that map to the CLI's exit statuses (2: bad input, 1: anything else)."""

from __future__ import annotations


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
