"""Publishing to a real S3-compatible server on 127.0.0.1 (moto's server mode), and loading back from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from orchestrator.deploy import PublishError, VerificationError, export_trial, load, publish
from orchestrator.deploy.s3 import Publisher, S3Location, composite_sha256
from tests.deploy.conftest import run_cli

pytestmark = pytest.mark.slow


def keys(server, bucket: str) -> list[str]:
    listing = server.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


@pytest.fixture
def local_int8(exports):
    """The int8 candidate exported locally: the outputs the published copy must reproduce."""
    return exports["int8stat"]


def publish_local(exports, trial_id: str, bucket: str, prefix: str, settings):
    """Publish an already exported folder (no rebuild) to s3://bucket/prefix/<run>/<trial>."""
    result = exports[trial_id]
    target = S3Location(bucket, f"{prefix}/{result.manifest.run_id}/{trial_id}")
    return target, publish(Path(result.location), target, settings)


def test_publish_then_load_gives_the_exported_models_outputs(
    run_dir, local_int8, bucket, fast_s3, s3_server, val_inputs, tmp_path
):
    result = export_trial(run_dir, "int8stat", f"s3://{bucket}/models", s3_settings=fast_s3)
    assert result.location == f"s3://{bucket}/models/{run_dir.name}/int8stat"
    names = [f.path for f in result.manifest.files] + ["manifest.json"]
    assert keys(s3_server, bucket) == sorted(f"models/{run_dir.name}/int8stat/{n}" for n in names)
    assert result.published.uploaded[-1] == "manifest.json" and not result.published.skipped

    published = load(result.location, endpoint_url=s3_server.url, cache=tmp_path / "cache")
    local = load(local_int8.location)
    assert torch.equal(published.predict(val_inputs), local.predict(val_inputs))
    same = lambda m: {f.path: f.sha256 for f in m.files if f.path.startswith("model.")}  # noqa: E731
    assert same(published.manifest) == same(local.manifest)  # byte-identical weights and programs


def test_objects_carry_sha256_metadata_checksums_and_content_types(exports, bucket, fast_s3, s3_server):
    target, _ = publish_local(exports, "fp32prun", bucket, "c", fast_s3)
    client = s3_server.client()
    for entry in exports["fp32prun"].manifest.files:
        head = client.head_object(Bucket=bucket, Key=target.key(entry.path), ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == entry.sha256
        assert head["ContentType"] == entry.content_type and head["ContentLength"] == entry.size_bytes
        assert head.get("ChecksumSHA256")
    weights = client.head_object(Bucket=bucket, Key=target.key("model.safetensors"))
    assert "-" in weights["ETag"]  # above the 64 KiB threshold: a multipart upload


def test_publishing_again_skips_identical_objects(exports, bucket, fast_s3):
    _, first = publish_local(exports, "bf16half", bucket, "p", fast_s3)
    _, second = publish_local(exports, "bf16half", bucket, "p", fast_s3)
    assert not first.skipped and first.uploaded[-1] == "manifest.json"
    assert not second.uploaded and len(second.skipped) == len(exports["bf16half"].manifest.files) + 1


def test_exporting_again_gives_byte_identical_weights_and_programs(run_dir, exports, tmp_path):
    again = export_trial(run_dir, "bf16half", tmp_path).manifest
    same = lambda m: {f.path: f.sha256 for f in m.files if f.path.startswith("model.")}  # noqa: E731
    assert same(again) == same(exports["bf16half"].manifest)


def test_multipart_upload_with_several_parts_is_verified_by_its_composite_checksum(bucket, fast_s3, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(11 * 1024 * 1024 + 7))
    fast_s3.multipart_chunksize = 5 * 1024 * 1024
    publisher = Publisher(S3Location(bucket, "multi"), fast_s3)
    assert publisher.put("big.bin", path) is True
    head = publisher.head("multi/big.bin")
    assert head["ChecksumSHA256"].split("-")[0] == composite_sha256(path, 5 * 1024 * 1024)
    assert head["ETag"].strip('"').endswith("-3")
    assert publisher.put("big.bin", path) is False  # identical: skipped


def test_server_stopped_mid_upload_gives_a_clear_error_and_no_manifest_then_a_rerun_completes(
    run_dir, bucket, fast_s3, s3_server, val_inputs, local_int8, tmp_path
):
    done: list[str] = []

    def stop_after_first_object(path: str, uploaded: bool) -> None:
        done.append(path)
        if len(done) == 1:
            s3_server.stop()

    try:
        with pytest.raises(PublishError) as failure:
            export_trial(
                run_dir, "int8stat", f"s3://{bucket}/m", s3_settings=fast_s3, on_object=stop_after_first_object
            )
    finally:
        s3_server.start()  # same port; moto keeps what was uploaded before the stop
    message = str(failure.value)
    assert f"s3://{bucket}/m/{run_dir.name}/int8stat" in message and s3_server.url in message
    assert "No manifest.json was written" in message and "run the same command again" in message
    prefix = f"m/{run_dir.name}/int8stat/"
    assert keys(s3_server, bucket) == [prefix + done[0]]

    again = export_trial(run_dir, "int8stat", f"s3://{bucket}/m", s3_settings=fast_s3)
    assert done[0] in again.published.skipped
    assert prefix + "manifest.json" in keys(s3_server, bucket)
    published = load(again.location, endpoint_url=s3_server.url, cache=tmp_path / "cache")
    assert torch.equal(published.predict(val_inputs), load(local_int8.location).predict(val_inputs))


def test_a_tampered_object_fails_verification_on_load(exports, bucket, fast_s3, s3_server, tmp_path):
    target, _ = publish_local(exports, "fp32prun", bucket, "t", fast_s3)
    key = target.key("model.safetensors")
    entry = exports["fp32prun"].manifest.file("model.safetensors")
    # Replaced with other bytes of the same size that even claim the original checksum in their metadata
    # (a different size is refused before fetching: tests/deploy/test_hostile_exports.py).
    body = bytearray((Path(exports["fp32prun"].location) / "model.safetensors").read_bytes())
    body[-1] ^= 0xFF
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata={"sha256": entry.sha256})
    with pytest.raises(
        VerificationError, match=rf"s3://{bucket}/{key}: refused: SHA-256 .* does not match the manifest"
    ):
        load(target.uri(), endpoint_url=s3_server.url, cache=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")], "the refused download was left behind"
    _, repaired = publish_local(exports, "fp32prun", bucket, "t", fast_s3)
    assert repaired.uploaded == ["model.safetensors"]  # publishing again replaces only what does not verify
    load(target.uri(), endpoint_url=s3_server.url, cache=tmp_path / "cache")


def test_a_missing_manifest_is_not_an_export(bucket, s3_server, tmp_path):
    with pytest.raises(VerificationError, match="no manifest"):
        load(f"s3://{bucket}/nothing/here", endpoint_url=s3_server.url, cache=tmp_path)


def test_a_missing_bucket_exits_2_naming_the_bucket_and_endpoint(run_dir, s3_server, capsys):
    argv = ["export", str(run_dir), "--dest", "s3://no-such-bucket-here/x", "--endpoint-url", s3_server.url]
    status, out, err = run_cli(argv, capsys)
    assert status == 2
    assert "bucket 'no-such-bucket-here' does not exist" in err and s3_server.url in err


def test_bad_credentials_exit_2_without_printing_them(run_dir, auth_s3_server, capsys, monkeypatch):
    url, key_id, secret, bucket_name = auth_s3_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-do-not-print")
    status, out, err = run_cli(
        ["export", str(run_dir), "--dest", f"s3://{bucket_name}/x", "--endpoint-url", url], capsys
    )
    assert status == 2
    assert "credentials from the standard chain were refused" in err and bucket_name in err and url in err
    assert "wrong-secret-do-not-print" not in out + err and secret not in out + err


def test_good_credentials_on_a_checking_server_publish(run_dir, auth_s3_server, monkeypatch, tmp_path, capsys):
    url, key_id, secret, bucket_name = auth_s3_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    status, out, err = run_cli(
        ["export", str(run_dir), "--trial", "bf16half", "--dest", f"s3://{bucket_name}/x", "--endpoint-url", url],
        capsys,
    )
    assert status == 0, err
    location = out.strip().splitlines()[-1]
    assert location == f"s3://{bucket_name}/x/{run_dir.name}/bf16half"
    assert secret not in out + err
    manifest = load(location, endpoint_url=url, cache=tmp_path).manifest
    assert secret not in manifest.model_dump_json() and key_id not in manifest.model_dump_json()


def test_no_credentials_at_all_exit_2(run_dir, s3_server, capsys, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    status, _, err = run_cli(
        ["export", str(run_dir), "--dest", "s3://whatever-bucket/x", "--endpoint-url", s3_server.url], capsys
    )
    assert status == 2 and "no usable AWS credentials" in err


def test_an_unreachable_endpoint_exits_2(run_dir, capsys):
    from tests.deploy.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    status, _, err = run_cli(["export", str(run_dir), "--dest", "s3://some-bucket/x", "--endpoint-url", url], capsys)
    assert status == 2 and "cannot reach the S3 endpoint" in err and url in err


def test_an_endpoint_with_a_password_in_it_is_redacted():
    from orchestrator.deploy.s3 import redact

    assert redact("http://user:hunter2@127.0.0.1:9000/") == "http://127.0.0.1:9000/"
