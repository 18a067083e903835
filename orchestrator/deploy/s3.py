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
import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from orchestrator.deploy._errors import FetchError, PublishError, UnsafeExport, VerificationError
from orchestrator.deploy.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    content_type,
    export_path,
    parse_manifest,
    read_manifest,
    sha256_file,
    verify_files,
)
from orchestrator.errors import InputError, first_line
from orchestrator.safe_files import atomic_target, write_atomic

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


@functools.cache
def _model_loader() -> Any:
    """botocore's loader of service models, shared: reading them again costs ~0.2 s per client."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def make_client(settings: S3Settings) -> Any:
    """An S3 client from the standard credential chain (env, profile, SSO, instance or pod role).

    Each client gets a fresh session, so credentials are resolved anew every time; only the
    service models (plain data, no credentials) are loaded once per process.
    """
    import boto3
    import botocore.session
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
        s3={"addressing_style": "path"} if settings.endpoint_url else {},
    )
    core = botocore.session.get_session()
    core.register_component("data_loader", _model_loader())
    return boto3.session.Session(botocore_session=core).client("s3", endpoint_url=settings.endpoint_url, config=config)


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
    return first_line(exc)


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
        if not checksum and self.settings.use_checksum:
            # Metadata is whatever the writer claimed; only the store's own checksum vouches for the bytes.
            return "the object has no S3 SHA-256 checksum, so its bytes are unverified"
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
    """Fetch an export's manifest and files into local_root, each checked against the manifest.

    The manifest is read into memory and validated first: a path that would land
    outside local_root (`..`, absolute, drive letter, backslash) or run through a
    symlink there is refused before a byte is written. Each object's size is
    compared with the manifest's before it is fetched, and again before it is
    hashed; manifest.json is written last, so a local copy with a manifest is
    complete. Files already in local_root with the right SHA-256 are not fetched again.
    """
    settings = settings or S3Settings()
    client = make_client(settings)
    check_bucket(client, source, settings)
    manifest, raw = _fetch_manifest(client, source)
    planned = [(entry, export_path(local_root, entry.path)) for entry in manifest.files]  # refuses before any write
    _check_room(local_root, sum(entry.size_bytes for entry in manifest.files), source)
    local_root.mkdir(parents=True, exist_ok=True)
    for entry, path in planned:
        _make_parents(local_root, path, entry.path)
        if path.is_file() and path.stat().st_size == entry.size_bytes and sha256_file(path) == entry.sha256:
            continue
        _fetch_file(client, source, entry.path, entry.size_bytes, entry.sha256, path)
    write_atomic(local_root / MANIFEST_NAME, raw)  # a rename replaces a symlink there; it never writes through one
    return manifest


def _fetch_manifest(client: Any, source: S3Location) -> tuple[Manifest, bytes]:
    """The manifest object, read into memory (at most MAX_MANIFEST_BYTES) and validated; nothing written."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = source.uri(MANIFEST_NAME)
    try:
        response = client.get_object(Bucket=source.bucket, Key=source.key(MANIFEST_NAME))
        size = int(response.get("ContentLength", 0))
        if size > MAX_MANIFEST_BYTES:
            response["Body"].close()  # refused from its length: the body is never read
            raise UnsafeExport(f"{uri}: {size:,} bytes, more than a manifest's {MAX_MANIFEST_BYTES:,}; refused")
        with response["Body"] as body:
            text = body.read(MAX_MANIFEST_BYTES + 1)
    except ClientError as exc:
        if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
            raise VerificationError(f"{uri}: no manifest: not a Hedgerow export, or its upload never completed") from None
        raise FetchError(f"{uri}: {_describe(exc)}") from None
    except BotoCoreError as exc:
        raise FetchError(f"{uri}: {_describe(exc)}") from None
    return parse_manifest(text, uri), text


def _check_room(local_root: Path, total_bytes: int, source: S3Location) -> None:
    """Refuse an export that cannot fit on the destination's disk before fetching any of it."""
    import shutil

    existing = local_root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if total_bytes > free:
        raise UnsafeExport(
            f"{source.uri(MANIFEST_NAME)}: its files add up to {total_bytes:,} bytes, more than the {free:,} free "
            f"under {existing}; refused before fetching"
        )


def _make_parents(local_root: Path, path: Path, rel: str) -> None:
    """Create path's folders under local_root, refusing a symlink that appeared on the way."""
    folder = local_root
    for segment in Path(rel).parts[:-1]:
        folder = folder / segment
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise UnsafeExport(f"{rel!r}: {folder} is a symlink or not a folder; refused")
        folder.mkdir(exist_ok=True)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UnsafeExport(f"{rel!r}: {path} is a symlink or not a plain file; refused")


def _fetch_file(client: Any, source: S3Location, rel: str, size_bytes: int, sha256: str, path: Path) -> None:
    """Fetch one object beside `path`, check its size then its SHA-256, and rename it into place."""
    from botocore.exceptions import BotoCoreError, ClientError

    uri = source.uri(rel)
    try:
        head = client.head_object(Bucket=source.bucket, Key=source.key(rel))
    except (ClientError, BotoCoreError) as exc:
        if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
            raise VerificationError(f"{uri}: missing; the manifest lists it ({size_bytes:,} bytes)") from None
        raise FetchError(f"{uri}: cannot fetch it ({_describe(exc)})") from None
    if int(head.get("ContentLength", -1)) != size_bytes:
        raise VerificationError(
            f"{uri}: refused: the object is {int(head.get('ContentLength', -1)):,} bytes where the manifest lists "
            f"{size_bytes:,}: it was modified or replaced after it was published (not fetched)"
        )
    try:
        with atomic_target(path) as tmp:  # its own name: replicas on one node may fetch at once
            client.download_file(source.bucket, source.key(rel), str(tmp))
            actual_size = tmp.stat().st_size
            if actual_size != size_bytes:
                raise VerificationError(
                    f"{uri}: refused: {actual_size:,} bytes arrived where the manifest lists {size_bytes:,} (not hashed)"
                )
            actual = sha256_file(tmp)
            if actual != sha256:
                raise VerificationError(
                    f"{uri}: refused: SHA-256 {actual[:12]}… does not match the manifest's "
                    f"{sha256[:12]}…: the object was modified or replaced after it was published"
                )
    except (ClientError, BotoCoreError) as exc:
        raise FetchError(f"{uri}: cannot fetch it ({_describe(exc)})") from None
