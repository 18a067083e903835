"""Publish an export to S3 (or any S3-compatible store) and fetch it back, verifying every object.

Objects go to `s3://bucket/prefix/<run_id>/<trial_id>/<file>`. Each is uploaded
with its SHA-256 in the object's metadata and, where the server supports it,
an S3 SHA-256 checksum (multipart above a size threshold: a composite checksum
of the parts); then it is verified by `head_object` against both. manifest.json
goes last, only after every other object verified, so a manifest in the bucket
means a complete export. An object already there with the same SHA-256 is
skipped, so running the same publish again finishes an interrupted one.
Credentials come from boto3's standard chain and are never printed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from orchestrator.deploy._errors import PublishError, VerificationError
from orchestrator.deploy.manifest import MANIFEST_NAME, Manifest, content_type, read_manifest, sha256_file, verify_files
from orchestrator.errors import InputError

log = logging.getLogger(__name__)
MIB = 1 << 20
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AccessDenied",
    "InvalidClientTokenId",
    "403",
}
_MISSING_BUCKET_CODES = {"NoSuchBucket", "404"}
_CHECKSUM_UNSUPPORTED = {"NotImplemented", "InvalidArgument", "InvalidRequest", "XAmzContentSHA256Mismatch"}


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash)."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}".rstrip("/")


def parse_s3_uri(uri: str, field_name: str = "--dest") -> S3Location:
    """`s3://bucket/prefix` → S3Location; anything else is an InputError naming the field."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise InputError(f"{field_name}: {uri!r} is not an S3 URI; expected s3://bucket/prefix")
    if not 3 <= len(parts.netloc) <= 63:
        raise InputError(f"{field_name}: bucket name {parts.netloc!r} must be 3 to 63 characters")
    return S3Location(bucket=parts.netloc, prefix=parts.path.strip("/"))


def redact(url: str | None) -> str:
    """An endpoint URL safe to print (any user:password@ removed); 'AWS S3' when none was given."""
    if not url:
        return "AWS S3"
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class S3Settings:
    """Endpoint, transfer and retry settings; tests shrink the thresholds and the retries."""

    endpoint_url: str | None = None
    multipart_threshold: int = 64 * MIB
    multipart_chunksize: int = 16 * MIB
    max_attempts: int = 5  # botocore's own retries per request (standard mode: backoff, throttling, 5xx)
    verify_attempts: int = 4  # our loop: upload + verify, with backoff between tries
    backoff_s: float = 1.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    use_checksum: bool = True  # S3 SHA-256 checksums; turned off for a server that rejects them


def make_client(settings: S3Settings) -> Any:
    """An S3 client from the standard credential chain (env, profile, SSO, instance or pod role)."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url, config=config)


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: Exception) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _describe(exc: Exception) -> str:
    """An error in one line without request details (no headers, no keys, no signatures)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def check_bucket(client: Any, location: S3Location, settings: S3Settings) -> None:
    """Fail early, as bad input, on a missing bucket, refused credentials or an unreachable endpoint."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    where = redact(settings.endpoint_url)
    try:
        client.list_objects_v2(Bucket=location.bucket, Prefix=location.key(), MaxKeys=1)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise InputError(
            f"no usable AWS credentials for bucket {location.bucket!r} at {where}: set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where an instance or pod role applies ({type(exc).__name__})"
        ) from None
    except EndpointConnectionError:
        raise InputError(
            f"cannot reach the S3 endpoint {where} for bucket {location.bucket!r}: check --endpoint-url and the network"
        ) from None
    except ClientError as exc:
        code = _code(exc)
        if code in _MISSING_BUCKET_CODES:
            raise InputError(
                f"bucket {location.bucket!r} does not exist at {where}: create it, or fix the bucket in --dest"
            ) from None
        if code in _CREDENTIAL_CODES or _status(exc) == 403:
            raise InputError(
                f"the credentials from the standard chain were refused for bucket {location.bucket!r} at {where} "
                f"({code}): check AWS_PROFILE / AWS_ACCESS_KEY_ID and that they may list and write the bucket"
            ) from None
        if code == "InvalidBucketName":
            raise InputError(f"--dest: {location.bucket!r} is not a valid bucket name") from None
        raise PublishError(f"bucket {location.bucket!r} at {where}: {_describe(exc)}") from None
    except BotoCoreError as exc:
        raise PublishError(f"bucket {location.bucket!r} at {where}: {_describe(exc)}") from None


def composite_sha256(path: Path, part_size: int) -> str:
    """S3's composite SHA-256 of a multipart object: SHA-256 of the parts' binary digests, base64."""
    digests = []
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(part_size), b""):
            digests.append(hashlib.sha256(chunk).digest())
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()


def _b64_sha256(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


@dataclass
class PublishResult:
    """Where the export went, and which objects were uploaded or already there."""

    uri: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


class Publisher:
    """Uploads files to one bucket with verification, retries and skipping of identical objects."""

    def __init__(self, location: S3Location, settings: S3Settings | None = None, client: Any = None) -> None:
        from boto3.s3.transfer import TransferConfig

        self.location = location
        self.settings = settings or S3Settings()
        self.client = client or make_client(self.settings)
        self.transfer = TransferConfig(
            multipart_threshold=self.settings.multipart_threshold, multipart_chunksize=self.settings.multipart_chunksize
        )

    def head(self, key: str) -> dict | None:
        """The object's headers (with checksums), or None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.location.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise

    def verify(self, key: str, path: Path, sha256: str, size: int) -> str | None:
        """None when the object matches the file (size, stored SHA-256, S3 checksum if any), else why not."""
        head = self.head(key)
        if head is None:
            return "the object is missing"
        if int(head.get("ContentLength", -1)) != size:
            return f"size {head.get('ContentLength')} bytes, expected {size}"
        stored = (head.get("Metadata") or {}).get("sha256")
        if stored != sha256:
            return f"stored sha256 {str(stored)[:12]}… differs from the file's {sha256[:12]}…"
        checksum = head.get("ChecksumSHA256")
        if checksum:
            base, _, parts = checksum.partition("-")
            etag_parts = str(head.get("ETag", "")).strip('"').partition("-")[2]
            if parts or etag_parts or head.get("ChecksumType") == "COMPOSITE":
                part = self.client.head_object(Bucket=self.location.bucket, Key=key, PartNumber=1)
                expected = composite_sha256(path, int(part["ContentLength"]))
            else:
                expected = _b64_sha256(sha256)
            if base != expected:
                return f"S3 checksum {base} differs from the file's {expected}"
        return None

    def _upload(self, key: str, path: Path, sha256: str) -> None:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import ClientError

        extra = {"ContentType": content_type(path), "Metadata": {"sha256": sha256}}
        if self.settings.use_checksum:
            extra["ChecksumAlgorithm"] = "SHA256"
        try:
            self.client.upload_file(str(path), self.location.bucket, key, ExtraArgs=extra, Config=self.transfer)
        except (ClientError, S3UploadFailedError) as exc:
            if (
                self.settings.use_checksum
                and any(code in str(exc) for code in _CHECKSUM_UNSUPPORTED)
                and "checksum" in str(exc).lower()
            ):
                log.warning(
                    "%s rejects SHA-256 checksums; verifying by the stored sha256 only",
                    redact(self.settings.endpoint_url),
                )
                self.settings.use_checksum = False
                extra.pop("ChecksumAlgorithm")
                self.client.upload_file(str(path), self.location.bucket, key, ExtraArgs=extra, Config=self.transfer)
            else:
                raise

    def put(self, rel: str, path: Path, sha256: str | None = None) -> bool:
        """Upload one file unless an identical object is there; verify it. True if uploaded, False if skipped."""
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.location.key(rel)
        sha256 = sha256 or sha256_file(path)
        size = path.stat().st_size
        last = "no attempt made"
        for attempt in range(self.settings.verify_attempts):
            if attempt:
                time.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                if self.verify(key, path, sha256, size) is None:
                    return False
                self._upload(key, path, sha256)
                problem = self.verify(key, path, sha256, size)
                if problem is None:
                    return True
                last = f"verification failed: {problem}"
            except ClientError as exc:
                if 400 <= _status(exc) < 500 and _status(exc) not in (408, 429):
                    raise PublishError(self._failed(rel, _describe(exc))) from None
                last = _describe(exc)
            except (BotoCoreError, S3UploadFailedError, OSError) as exc:
                last = _describe(exc)
            log.warning("s3 put %s: attempt %d of %d failed: %s", key, attempt + 1, self.settings.verify_attempts, last)
        raise PublishError(self._failed(rel, f"{last} (after {self.settings.verify_attempts} attempts)"))

    def _failed(self, rel: str, reason: str) -> str:
        return (
            f"publishing to {self.location.uri()} at {redact(self.settings.endpoint_url)} failed on {rel}: {reason}. "
            f"No {MANIFEST_NAME} was written, so this export is incomplete and will not load; run the same command "
            "again to finish it (objects already uploaded and verified are skipped)"
        )


def publish(
    local_root: Path,
    dest: S3Location,
    settings: S3Settings | None = None,
    on_object: Callable[[str, bool], None] | None = None,
) -> PublishResult:
    """Upload an export folder to `dest` (the run/trial prefix itself); manifest.json last, after all else verified.

    `on_object(relative_path, uploaded)` is called after each object is in place.
    """
    settings = settings or S3Settings()
    manifest = read_manifest(local_root / MANIFEST_NAME)
    verify_files(local_root, manifest)  # never publish files that differ from their manifest
    publisher = Publisher(dest, settings)
    check_bucket(publisher.client, dest, settings)
    result = PublishResult(uri=dest.uri())
    for entry in manifest.files:
        uploaded = publisher.put(entry.path, local_root / entry.path, entry.sha256)
        (result.uploaded if uploaded else result.skipped).append(entry.path)
        if on_object is not None:
            on_object(entry.path, uploaded)
    uploaded = publisher.put(MANIFEST_NAME, local_root / MANIFEST_NAME)
    (result.uploaded if uploaded else result.skipped).append(MANIFEST_NAME)
    if on_object is not None:
        on_object(MANIFEST_NAME, uploaded)
    return result


def download(source: S3Location, local_root: Path, settings: S3Settings | None = None) -> Manifest:
    """Fetch an export's manifest and files into local_root, each checked against the manifest's SHA-256.

    Files already in local_root with the right SHA-256 are not fetched again.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    settings = settings or S3Settings()
    client = make_client(settings)
    check_bucket(client, source, settings)
    local_root.mkdir(parents=True, exist_ok=True)
    manifest_path = local_root / MANIFEST_NAME
    try:
        client.download_file(source.bucket, source.key(MANIFEST_NAME), str(manifest_path))
    except ClientError as exc:
        if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
            raise VerificationError(
                f"{source.uri(MANIFEST_NAME)}: no manifest: not a Hedgerow export, or its upload never completed"
            ) from None
        raise VerificationError(f"{source.uri(MANIFEST_NAME)}: {_describe(exc)}") from None
    manifest = read_manifest(manifest_path)
    for entry in manifest.files:
        path = local_root / entry.path
        if path.is_file() and sha256_file(path) == entry.sha256:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(
            f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
        )  # replicas on one node may fetch at once
        try:
            client.download_file(source.bucket, source.key(entry.path), str(tmp))
        except (ClientError, BotoCoreError) as exc:
            tmp.unlink(missing_ok=True)
            raise VerificationError(f"{source.uri(entry.path)}: cannot fetch it ({_describe(exc)})") from None
        actual = sha256_file(tmp)
        if actual != entry.sha256:
            tmp.unlink(missing_ok=True)
            raise VerificationError(
                f"{source.uri(entry.path)}: refused: SHA-256 {actual[:12]}… does not match the manifest's "
                f"{entry.sha256[:12]}…: the object was modified or replaced after it was published"
            )
        tmp.replace(path)
    return manifest
