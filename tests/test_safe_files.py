"""The checks every reader of someone else's files goes through: paths, symlinks, sizes, JSON, YAML bombs; and the
one way every writer replaces a file."""

from __future__ import annotations

import os
import threading

import pytest

from orchestrator.errors import InputError, UnsafeFile
from orchestrator.safe_files import (
    atomic_target,
    check_regular_file,
    check_relative_path,
    check_yaml_nodes,
    join_inside,
    parse_json,
    read_json,
    write_atomic,
)

# (path, words the refusal must contain)
BAD_PATHS = [
    ("../../../../tmp/x", "climbs out"),
    ("a/../../b", "climbs out"),
    ("..", "climbs out"),
    ("/etc/cron.d/x", "absolute"),
    ("//server/share/x", "absolute"),
    ("C:/Windows/x", "drive letter"),
    ("c:x", "drive letter"),
    ("a\\..\\..\\x", "backslash"),
    ("a//b", "not normalized"),
    ("./a", "not normalized"),
    ("a/", "not normalized"),
    ("", "expected a relative path"),
    ("a\x00b", "characters"),
    ("a\nb", "characters"),
    ("x" * 2000, "longer than"),
]


@pytest.mark.parametrize(("path", "words"), BAD_PATHS, ids=[repr(p)[:24] for p, _ in BAD_PATHS])
def test_unsafe_relative_paths_are_refused_naming_the_field(path, words):
    with pytest.raises(UnsafeFile, match="files.path") as info:
        check_relative_path(path, "files.path")
    assert words in str(info.value)
    assert isinstance(info.value, InputError)  # exit status 2 through the CLI


@pytest.mark.parametrize("value", [None, 7, ["a"], {"a": 1}])
def test_non_string_paths_are_refused(value):
    with pytest.raises(UnsafeFile, match="expected a relative path"):
        check_relative_path(value, "files.path")


@pytest.mark.parametrize("path", ["model.safetensors", "programs/model.int8.onnx", "tok/vocab.txt", "a-b_c+d@e=f.json"])
def test_plain_relative_paths_pass(path):
    assert check_relative_path(path, "files.path") == path


def test_join_inside_refuses_a_symlink_anywhere_on_the_way(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "sub").symlink_to(outside, target_is_directory=True)
    (root / "file").symlink_to(outside / "target")
    with pytest.raises(UnsafeFile, match="symlink"):
        join_inside(root, "sub/model.bin", "files.path")
    with pytest.raises(UnsafeFile, match="symlink"):
        join_inside(root, "file", "files.path")
    assert join_inside(root, "new/model.bin", "files.path") == root / "new" / "model.bin"


def test_a_file_larger_than_its_cap_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: 64 MiB on paper, nothing on disk
    with pytest.raises(UnsafeFile, match="more than the 1,024"):
        check_regular_file(big, 1024)


def test_a_symlinked_or_non_file_json_is_refused(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "x"}')
    link = tmp_path / "run.json"
    link.symlink_to(secret)
    with pytest.raises(UnsafeFile, match="symlink"):
        read_json(link)
    with pytest.raises(UnsafeFile, match="plain file"):
        read_json(tmp_path)


@pytest.mark.parametrize(
    ("text", "words"),
    [('{"run_id": "x", ', "truncated"), ("[1, 2]", "expected a JSON object, got an array"), ("null", "got null"),
     ('"a string"', "got a string"), ("\udcff", "not valid JSON")],
)  # fmt: skip
def test_truncated_or_wrong_typed_json_is_refused(text, words):
    with pytest.raises(UnsafeFile, match="summary.json") as info:
        parse_json(text, "summary.json")
    assert words in str(info.value)


def test_deeply_nested_json_is_refused_not_a_crash():
    with pytest.raises(UnsafeFile, match="not valid JSON"):
        parse_json("[" * 100_000 + "]" * 100_000, "record.json")


def test_yaml_alias_bombs_stop_at_the_node_limit():
    import yaml

    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    data = yaml.safe_load("\n".join(levels))  # shared references: cheap to build, 10^9 values to walk
    with pytest.raises(UnsafeFile, match="more than 1,000 values"):
        check_yaml_nodes(data, "config.yaml", limit=1000)
    check_yaml_nodes({"task": {"name": "digits"}, "space": {"bits": [32, 8]}}, "config.yaml")


def test_read_json_reads_a_plain_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"run_id": "digits-1"}')
    assert read_json(path) == {"run_id": "digits-1"}


def test_write_atomic_writes_text_and_bytes_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "run.json"
    write_atomic(path, '{"run_id": "é"}')
    assert path.read_bytes() == '{"run_id": "é"}'.encode("utf-8")
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(tmp_path) == ["run.json"]


def test_a_new_file_gets_the_mode_a_plain_open_would_give(tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    write_atomic(tmp_path / "atomic", "x")
    assert (tmp_path / "atomic").stat().st_mode == plain.stat().st_mode  # not mkstemp's owner-only 0600


def test_two_writers_at_once_each_have_their_own_temporary_file(tmp_path):
    path = tmp_path / "cache.safetensors"
    with atomic_target(path) as first, atomic_target(path) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"A" * 1000)
        second.write_bytes(b"B" * 10)  # a shared name would have cut the first writer's file here
        assert first.read_bytes() == b"A" * 1000
    assert path.read_bytes() == b"A" * 1000  # the last to finish wins, whole
    assert os.listdir(tmp_path) == ["cache.safetensors"]


def test_concurrent_writers_leave_one_whole_file(tmp_path):
    path = tmp_path / "record.json"
    payloads = [bytes([65 + i]) * 200_000 for i in range(4)]
    start = threading.Barrier(len(payloads))
    errors = []

    def writer(data: bytes) -> None:
        start.wait()
        try:
            for _ in range(10):
                write_atomic(path, data)
        except Exception as exc:  # noqa: BLE001  (collected: a thread's exception would be lost)
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in payloads
    assert os.listdir(tmp_path) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "report.html"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_target(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    with pytest.raises(TypeError, match="expected bytes or str"):
        write_atomic(path, 7)  # type: ignore[arg-type]

    def refuse(src, dst):
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="rename refused"):
        write_atomic(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.html"]


def test_a_missing_folder_is_an_error_not_created(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "x.json", "{}")
    assert not (tmp_path / "absent").exists()
