"""Read files that came from someone else as hostile: paths that stay inside their folder, no symlinks, size caps.

Manifests, run folders, catalogs, checkpoints and configs may have been written
by anyone who can write to a bucket or share a folder. Every reader goes
through these checks before it trusts a path or parses a byte, and each
refusal is an `UnsafeFile` (exit status 2) that names the file and the field.

Every writer goes through `write_atomic` (or `atomic_target`, for a library that
writes to a path itself): readers see the old file or the whole new one, never half.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from orchestrator.errors import UnsafeFile

KIB = 1 << 10
MIB = 1 << 20
MAX_JSON_BYTES = 16 * MIB  # summary.json, run.json, a trial record, a checkpoint's sidecar
MAX_CONFIG_BYTES = 1 * MIB  # a search config is a page of YAML
MAX_TABLE_BYTES = 256 * MIB  # trials.csv of a very long search, a price catalog
MAX_YAML_NODES = 100_000  # after aliases are expanded: a "billion laughs" document stops here
MAX_PATH_CHARS = 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._+@=-]+$")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_path(text: Any, field: str) -> str:
    """`text` if it is a plain relative POSIX path that stays inside its folder, else UnsafeFile naming `field`.

    Refused: empty or non-string values, absolute paths, drive letters, backslashes,
    `.` / `..` / empty segments, and characters outside letters, digits and `._+@=-`.
    """
    if not isinstance(text, str) or not text:
        raise UnsafeFile(f"{field}: expected a relative path such as 'model.safetensors', got {text!r}")
    shown = text if len(text) <= 80 else text[:77] + "..."
    if len(text) > MAX_PATH_CHARS:
        raise UnsafeFile(f"{field}: {shown!r} is longer than {MAX_PATH_CHARS} characters")
    if "\\" in text:
        raise UnsafeFile(f"{field}: {shown!r} contains a backslash; expected '/' between folders")
    if text.startswith("/"):
        raise UnsafeFile(f"{field}: {shown!r} is an absolute path; expected a path relative to its folder")
    if _DRIVE.match(text):
        raise UnsafeFile(f"{field}: {shown!r} starts with a drive letter; expected a path relative to its folder")
    for segment in text.split("/"):
        if segment == "..":
            raise UnsafeFile(f"{field}: {shown!r} climbs out of its folder with '..'")
        if segment in ("", "."):
            raise UnsafeFile(f"{field}: {shown!r} is not normalized (empty or '.' segment); expected 'a/b.ext'")
        if not _SEGMENT.match(segment):
            raise UnsafeFile(
                f"{field}: {shown!r} has characters other than letters, digits and '._+@=-' in {segment!r}"
            )
    return text


def join_inside(root: Path, rel: str, field: str) -> Path:
    """root/rel after checking rel, refusing a symlink anywhere from root down (root itself is the caller's)."""
    check_relative_path(rel, field)
    path = root
    for segment in rel.split("/"):
        path = path / segment
        if path.is_symlink():
            raise UnsafeFile(f"{field}: {rel!r}: {path} is a symlink; refused (files must lie inside {root})")
    return path


def check_regular_file(path: Path, max_bytes: int, what: str | None = None, allow_symlink: bool = False) -> int:
    """The size of a plain file no larger than max_bytes; a symlink, a folder or a larger file is UnsafeFile.

    allow_symlink: for a file the user names themselves (their own config); never inside a run folder or an export.
    """
    what = what or str(path)
    if path.is_symlink() and not allow_symlink:
        raise UnsafeFile(f"{what}: is a symlink; refused (expected a plain file)")
    if not path.is_file():
        raise UnsafeFile(f"{what}: expected a plain file")
    size = path.stat().st_size
    if size > max_bytes:
        raise UnsafeFile(f"{what}: {size:,} bytes, more than the {max_bytes:,} a file of this kind may hold; refused")
    return size


def read_text(path: Path, max_bytes: int, what: str | None = None, allow_symlink: bool = False) -> str:
    """A plain, size-capped UTF-8 text file's contents."""
    what = what or str(path)
    check_regular_file(path, max_bytes, what, allow_symlink)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeFile(f"{what}: not UTF-8 text") from None


def parse_json(text: str | bytes, what: str, expect: type = dict) -> Any:
    """JSON of the expected top-level type; truncated or wrong-typed JSON is UnsafeFile naming `what`."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        detail = f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise UnsafeFile(f"{what}: not valid JSON ({detail}); truncated or damaged?") from None
    if not isinstance(data, expect):
        raise UnsafeFile(f"{what}: expected a JSON {_JSON_KINDS.get(expect, expect.__name__)}, got {_kind(data)}")
    return data


def read_json(path: Path, what: str | None = None, expect: type = dict, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """A plain, size-capped JSON file of the expected top-level type."""
    what = what or str(path)
    return parse_json(read_text(path, max_bytes, what), what, expect)


def read_json_if_present(path: Path, what: str | None = None) -> dict:
    """A JSON object file that may be absent ({} then), read as `read_json` reads: a link or damage is UnsafeFile."""
    if not path.exists() and not path.is_symlink():
        return {}
    return read_json(path, what)


def check_yaml_nodes(data: Any, what: str, limit: int = MAX_YAML_NODES) -> None:
    """Refuse YAML whose aliases expand past `limit` nodes (a "billion laughs" bomb) before anything walks it."""
    count = 0
    stack = [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            raise UnsafeFile(
                f"{what}: expands to more than {limit:,} values (YAML aliases repeated inside each other?); refused"
            )
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


_JSON_KINDS = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}


def _kind(value: Any) -> str:
    """What a parsed JSON value is, as a message says it: 'an array', 'a number', 'null'."""
    name = _JSON_KINDS[type(value)]
    return name if value is None else f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


@contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write: fsynced and renamed onto `path` at the end, removed if it raises."""
    path = Path(path)
    # mkstemp: a name no other writer holds, so two processes writing the same file never share a temporary one
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp makes it owner-only; give it what open() would
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` (text as UTF-8) to `path` through a temporary file, fsync and a rename."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"write_atomic: expected bytes or str, got {type(data).__name__}")
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)


@functools.cache
def _new_file_mode() -> int:
    mask = os.umask(0o022)  # the only way to read the umask is to set it: put it straight back
    os.umask(mask)
    return 0o666 & ~mask
