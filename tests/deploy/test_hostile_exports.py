"""Exports written by someone else: every malicious or malformed manifest is refused before a byte is written.

Each case is fed to `deploy.load` on a local folder, to `deploy.s3.download` and `deploy.load` against
moto's real S3 server, and to `hedgerow verify` for both; each must be refused (exit 2 from the CLI) and
leave nothing outside the destination, nor the destination itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import pytest

from orchestrator.deploy import UnsafeExport, VerificationError, load
from orchestrator.deploy.s3 import S3Location, S3Settings, download
from tests.deploy.conftest import run_cli

pytestmark = pytest.mark.slow

PAYLOAD = b"#!/bin/sh\necho pwned\n"
ESCAPES = "escaped-"  # every hostile path below names a file starting with this


def _entry(path: str) -> dict:
    return {
        "path": path,
        "sha256": hashlib.sha256(PAYLOAD).hexdigest(),
        "size_bytes": len(PAYLOAD),
        "content_type": "application/octet-stream",
    }


def _add(path: str) -> Callable[[dict, Path], None]:
    return lambda manifest, tmp: manifest["files"].append(_entry(path.format(tmp=tmp)))


def _set(*keys: str, value) -> Callable[[dict, Path], None]:
    def mutate(manifest: dict, tmp: Path) -> None:
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value.format(tmp=tmp) if isinstance(value, str) else value

    return mutate


def _duplicate_folded(manifest: dict, tmp: Path) -> None:
    first = dict(manifest["files"][0])
    first["path"] = first["path"].upper()
    manifest["files"].append(first)


# (case id, how the manifest is changed, words the refusal must contain)
CASES = [
    ("parent", _add("../../escaped-parent"), "climbs out"),
    ("deep-parent", _add("a/../../../escaped-deep"), "climbs out"),
    ("absolute", _add("{tmp}/escaped-absolute"), "absolute path"),
    ("cron", _add("/etc/cron.d/escaped-cron"), "absolute path"),
    ("drive-letter", _add("C:/escaped-drive"), "drive letter"),
    ("backslash", _add("..\\..\\escaped-backslash"), "backslash"),
    ("dot-segment", _add("./escaped-dot"), "not normalized"),
    ("empty-segment", _add("a//escaped-empty"), "not normalized"),
    ("nul-byte", _add("escaped-\x00.sh"), "characters other than"),
    ("manifest-itself", _add("manifest.json"), "the manifest itself"),
    ("weights-outside", _set("weights", value="../../escaped-weights.safetensors"), "weights"),
    ("program-outside", _set("programs", 0, "file", value="/etc/escaped-passwd"), "programs"),
    ("duplicate-case-folded", _duplicate_folded, "listed twice"),
    ("files-not-a-list", _set("files", value="model.safetensors"), "files"),
    ("size-not-a-number", _set("files", 0, "size_bytes", value="huge"), "size_bytes"),
    ("entry-not-an-object", _set("files", 0, value=7), "files.0"),
    ("negative-size", _set("files", 0, "size_bytes", value=-1), "size_bytes"),
    ("bad-sha256", _set("files", 0, "sha256", value="../" * 21 + "x"), "sha256"),
]
CASE_IDS = [c[0] for c in CASES]


def _hostile_copy(export_dir: Path, tmp_path: Path, mutate: Callable[[dict, Path], None]) -> Path:
    copy = tmp_path / "hostile"
    shutil.copytree(export_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    mutate(manifest, tmp_path)
    (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def _upload(server, bucket: str, prefix: str, folder: Path) -> str:
    client = server.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())
    return f"s3://{bucket}/{prefix}"


def _escaped(tmp_path: Path) -> list[Path]:
    """Files a hostile manifest tried to write, wherever they would have landed."""
    found = list(tmp_path.rglob(f"{ESCAPES}*"))
    for system_folder in (Path("/etc/cron.d"), Path("/etc")):
        found += list(system_folder.glob(f"{ESCAPES}*"))
    return found


@pytest.fixture
def base_export(exports) -> Path:
    return Path(exports["fp32prun"].location)


@pytest.mark.parametrize(("case", "mutate", "words"), CASES, ids=CASE_IDS)
def test_a_hostile_local_export_is_refused_by_load_and_by_verify(case, mutate, words, base_export, tmp_path, capsys):
    folder = _hostile_copy(base_export, tmp_path, mutate)
    with pytest.raises(UnsafeExport, match="manifest") as info:
        load(folder)
    assert words in str(info.value), str(info.value)
    status, _, err = run_cli(["verify", str(folder)], capsys)
    assert status == 2 and words in err, err
    assert not _escaped(tmp_path)


@pytest.mark.parametrize(("case", "mutate", "words"), CASES, ids=CASE_IDS)
def test_a_hostile_s3_export_is_refused_before_a_byte_is_written(
    case, mutate, words, base_export, tmp_path, s3_server, bucket, capsys
):
    uri = _upload(s3_server, bucket, "models/run/trial", _hostile_copy(base_export, tmp_path / "src", mutate))
    dest = tmp_path / "cache" / "a" / "b"
    settings = S3Settings(endpoint_url=s3_server.url, max_attempts=1)
    with pytest.raises(UnsafeExport, match=r"s3://.*manifest.json") as info:
        download(S3Location(bucket, "models/run/trial"), dest, settings)
    assert words in str(info.value), str(info.value)
    assert not dest.exists(), "the destination was created for a manifest that was refused"
    with pytest.raises(UnsafeExport):
        load(uri, endpoint_url=s3_server.url, cache=tmp_path / "cache")
    status, _, err = run_cli(["verify", uri, "--endpoint-url", s3_server.url], capsys)
    assert status == 2 and words in err, err
    assert not list((tmp_path / "cache").rglob("*.*")), "a file was written for a refused manifest"
    assert not _escaped(tmp_path)


def test_a_truncated_manifest_is_refused_locally_and_from_s3(base_export, tmp_path, s3_server, bucket, capsys):
    folder = tmp_path / "export"
    shutil.copytree(base_export, folder)
    text = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(UnsafeExport, match="not a valid Hedgerow manifest"):
        load(folder)
    uri = _upload(s3_server, bucket, "t", folder)
    status, _, err = run_cli(["verify", uri, "--endpoint-url", s3_server.url], capsys)
    assert status == 2 and "manifest.json: not a valid Hedgerow manifest" in err


def test_an_oversized_manifest_is_refused_unread(base_export, tmp_path, s3_server, bucket, capsys):
    folder = tmp_path / "export"
    shutil.copytree(base_export, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["notes"] = ["x" * (5 << 20)]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnsafeExport, match="more than"):
        load(folder)
    uri = _upload(s3_server, bucket, "big", folder)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeExport, match="more than a manifest's"):
        download(S3Location(bucket, "big"), dest, S3Settings(endpoint_url=s3_server.url))
    assert not dest.exists()
    status, _, err = run_cli(["verify", uri, "--endpoint-url", s3_server.url], capsys)
    assert status == 2 and "more than" in err


def test_an_object_larger_than_its_manifest_entry_is_refused_before_it_is_fetched(
    base_export, tmp_path, s3_server, bucket
):
    _upload(s3_server, bucket, "m", base_export)
    huge = b"\0" * (3 << 20)  # the weights replaced by something bigger, after publishing
    s3_server.client().put_object(Bucket=bucket, Key="m/model.safetensors", Body=huge)
    dest = tmp_path / "dest"
    with pytest.raises(VerificationError, match="model.safetensors: refused: the object is 3,145,728 bytes"):
        download(S3Location(bucket, "m"), dest, S3Settings(endpoint_url=s3_server.url))
    assert not (dest / "model.safetensors").exists() and not (dest / "manifest.json").exists()
    assert not list(dest.rglob("*.part")), "a partial download was left behind"
    assert not list(dest.rglob("*.tmp")), "a partial download was left behind"


def test_a_listed_file_that_is_a_symlink_is_refused_not_read(base_export, tmp_path, capsys):
    folder = tmp_path / "export"
    shutil.copytree(base_export, folder)
    outside = tmp_path / "outside.safetensors"
    (folder / "model.safetensors").rename(outside)
    (folder / "model.safetensors").symlink_to(outside)  # same bytes, so only the link itself can refuse it
    with pytest.raises(UnsafeExport, match="symlink"):
        load(folder)
    status, _, err = run_cli(["verify", str(folder)], capsys)
    assert status == 2 and "symlink" in err


def test_a_symlinked_manifest_is_refused(base_export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(base_export, folder)
    (folder / "manifest.json").rename(tmp_path / "elsewhere.json")
    (folder / "manifest.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafeExport, match="symlink"):
        load(folder)


def test_a_symlink_on_the_way_in_the_destination_is_refused(base_export, tmp_path, s3_server, bucket):
    """A replica's cache folder where someone planted a link: the download must not write through it."""
    folder = _hostile_copy(base_export, tmp_path / "src", lambda m, _: None)
    (folder / "tok").mkdir()
    (folder / "tok" / "escaped-vocab.txt").write_bytes(PAYLOAD)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"].append(_entry("tok/escaped-vocab.txt"))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _upload(s3_server, bucket, "s", folder)
    dest = tmp_path / "cache"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "tok").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafeExport, match="symlink"):
        download(S3Location(bucket, "s"), dest, S3Settings(endpoint_url=s3_server.url))
    assert not list(outside.iterdir()), "the download wrote through the symlink"
    assert not list(dest.glob("*.safetensors")), "files were fetched before the manifest's paths were all checked"


def test_an_onnx_program_reading_external_data_outside_the_export_is_refused(exports, tmp_path):
    import onnx
    from onnx.external_data_helper import set_external_data

    from orchestrator.deploy.loader import check_onnx_external_data
    from orchestrator.deploy.manifest import read_manifest

    folder = tmp_path / "export"
    shutil.copytree(exports["fp32prun"].location, folder)
    manifest = read_manifest(folder / "manifest.json")
    program = next(p.file for p in manifest.programs if p.format == "onnx" and p.written)
    model = onnx.load(str(folder / program))
    tensor = model.graph.initializer[0]
    set_external_data(tensor, location="../../escaped-secret.bin")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    onnx.save(model, str(folder / program))
    with pytest.raises(UnsafeExport, match="climbs out"):
        check_onnx_external_data(folder, program, manifest)


def test_a_valid_export_verifies_from_a_folder_and_from_s3(base_export, s3_server, bucket, capsys):
    status, out, err = run_cli(["verify", str(base_export)], capsys)
    assert status == 0 and "ok:" in out, err
    uri = _upload(s3_server, bucket, "ok", base_export)
    status, out, err = run_cli(["verify", uri, "--endpoint-url", s3_server.url], capsys)
    assert status == 0 and "match their SHA-256" in out, err
