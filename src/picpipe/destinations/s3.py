"""The ``s3`` destination: any S3-compatible object store (AWS, MinIO, Garage, Ceph, R2, B2…).

An object appears whole or not at all: one PUT up to ``multipart_threshold_mb``, above it a
multipart upload that becomes visible only at CompleteMultipartUpload. Integrity, end to end:
- the bytes are hashed as they are read and compared with the asset's SHA-256 before anything
  is committed, so a stream that is not the asset never becomes an object;
- every request body carries Content-MD5 (single PUTs also x-amz-checksum-sha256), so a server
  that checks refuses bytes damaged on the way (``BadDigest``);
- our SHA-256 is stored as ``x-amz-meta-picpipe-sha256``. A multipart ETag is not an MD5, so a
  cheap verify compares size and that value, plus the ETag of a single-part object and the
  server's own SHA-256 checksum where it returns them; a deep verify reads the object back.
Multipart uploads resume: the upload id is checkpointed right after it is created; a later put
lists the parts the server holds and sends only those whose ETag is not the MD5 of our bytes
(`picpipe.destinations.s3_multipart`).
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path  # noqa: TC003 - pydantic reads the annotations at runtime
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError
from pydantic import Field, SecretStr
from urllib3.exceptions import HTTPError as Urllib3Error

from picpipe import __version__
from picpipe.destinations.base import (
    OBJECT_STORE_LAYOUT,
    READ_CHUNK,
    AssetRef,
    ConnectionReport,
    DestinationCaps,
    DestinationOptions,
    Digests,
    RemoteObject,
    Verification,
    render_layout,
    require_snapshot_key,
    resolve_secret,
    verify_by_reading,
)
from picpipe.destinations.s3_errors import error_code, http_status, map_error, redact
from picpipe.destinations.s3_multipart import (
    MD5_ETAG,
    MIB,
    NOT_THE_ASSET,
    MultipartUpload,
    etag_of,
    md5_etag,
    read_exactly,
    unquote_etag,
    whole_answer,
)
from picpipe.errors import (
    DestinationAuthFailed,
    DestinationError,
    DestinationMisconfigured,
    DestinationUnavailable,
    IntegrityMismatch,
)
from picpipe.hashing import md5_bytes, sha256_bytes
from picpipe.library.layout import TEMP_PREFIX, is_temp_name
from picpipe.redact import mask_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

META_SHA256 = "picpipe-sha256"  # sent as x-amz-meta-picpipe-sha256
_QUIET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")


class S3Options(DestinationOptions):
    """An S3 bucket at AWS or at any S3-compatible server."""

    kind: str = "s3"
    bucket: str = Field(description="bucket name (it must exist; picpipe never creates one)")
    prefix: str = Field(default="", description="key prefix inside the bucket, e.g. photos")
    endpoint_url: str | None = Field(
        default=None,
        description="S3 API URL of a self-hosted server or another provider "
        "(http://nas:9000, https://<account>.r2.cloudflarestorage.com); empty = AWS",
    )
    region: str | None = Field(
        default=None,
        description="region; empty = AWS_REGION or the profile's (us-east-1 suits most servers)",
    )
    access_key_id: SecretStr | None = Field(
        default=None,
        description="access key id; leave every credential option empty to use boto3's chain "
        "(AWS_* environment, ~/.aws profile, instance or task role)",
    )
    access_key_id_env: str | None = Field(
        default=None, description="environment variable holding the access key id"
    )
    access_key_id_file: Path | None = Field(
        default=None, description="file holding the access key id"
    )
    secret_access_key: SecretStr | None = Field(default=None, description="secret access key")
    secret_access_key_env: str | None = Field(
        default=None, description="environment variable holding the secret access key"
    )
    secret_access_key_file: Path | None = Field(
        default=None, description="file holding the secret access key"
    )
    storage_class: str | None = Field(
        default=None,
        description="e.g. STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE; empty = the bucket's default",
    )
    multipart_threshold_mb: int = Field(
        default=64,
        ge=5,
        le=5 * 1024,
        description="objects larger than this (MiB) go up in parts and resume after an "
        "interruption (give the bucket an AbortIncompleteMultipartUpload lifecycle rule)",
    )
    part_size_mb: int = Field(
        default=16,
        ge=5,
        le=5 * 1024,
        description="MiB per part (grown automatically to stay within 10,000 parts)",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description="path for most self-hosted servers (MinIO, Garage, Ceph); auto for AWS",
    )
    verify_tls: bool = Field(
        default=True, description="check the server's TLS certificate (off only for tests)"
    )
    checksum_header: bool = Field(
        default=True,
        description="send x-amz-checksum-sha256 with single-part uploads and ask for it when "
        "verifying (turn off for a server that refuses the header)",
    )
    read_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds a request may wait for the server before it fails (and is retried)",
    )


class S3Destination:
    """Replicas as objects in one bucket; see `picpipe.destinations.base` for the contract."""

    kind: ClassVar[str] = "s3"
    caps: ClassVar[DestinationCaps] = DestinationCaps(
        remote_checksum="sha256",
        resumable=True,
        needs=frozenset({"md5"}),
        default_layout=OBJECT_STORE_LAYOUT,
    )
    Options: ClassVar[type[DestinationOptions]] = S3Options

    def __init__(self, name: str, options: DestinationOptions, *, client: Any = None) -> None:
        """``client``: a ready boto3 S3 client (tests); by default one is built on first use."""
        assert isinstance(options, S3Options)
        self.name = name
        self.options = options
        self.bucket = options.bucket
        self._layout = options.layout or self.caps.default_layout
        self._threshold = options.multipart_threshold_mb * MIB
        self._client = client
        self._client_lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()  # blanked out of every error message

    @property
    def client(self) -> Any:
        """The one boto3 client of this destination (thread-safe; sessions are not, so the
        session lives only while the client is built)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def key_for(self, asset: AssetRef) -> str:
        return render_layout(self._layout, asset, self.options.prefix)

    def stat(self, key: str) -> RemoteObject | None:
        head = self._head(key)
        return None if head is None else _remote(key, head)

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        digests: Digests,
        asset: AssetRef,
        resume: dict[str, Any] | None = None,
        checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> RemoteObject:
        fields: dict[str, Any] = {"Metadata": {META_SHA256: digests.sha256}}
        if asset.mime_type:
            fields["ContentType"] = asset.mime_type
        if self.options.storage_class:
            fields["StorageClass"] = self.options.storage_class
        if digests.size > self._threshold:
            return self._multipart().put(key, data, digests, fields, resume, checkpoint)
        if resume and isinstance(resume.get("upload_id"), str):  # options changed since then
            self._multipart().abort_quietly(str(resume.get("key", key)), resume["upload_id"])
        return self._put_single(key, data, digests, fields)

    def verify(self, key: str, digests: Digests, *, deep: bool = False) -> Verification:
        if deep:
            return self._verify_deep(key, digests)
        head = self._head(key, checksum=True)
        method = "size + sha256 metadata"
        if head is None:
            return Verification(False, key, method, "missing")
        remote = _remote(key, head)
        if remote.size != digests.size:
            return Verification(False, key, method, f"size {remote.size} != {digests.size}", remote)
        if remote.sha256 is None:
            return Verification(False, key, method, "no picpipe-sha256 metadata", remote)
        if remote.sha256 != digests.sha256:
            return Verification(False, key, method, "sha256 metadata differs", remote)
        if digests.md5 and remote.md5:
            method += " + etag md5"
            if remote.md5 != digests.md5:
                return Verification(False, key, method, "ETag is not the asset's MD5", remote)
        server = head.get("ChecksumSHA256")
        if server and "-" not in server and head.get("ChecksumType") != "COMPOSITE":
            method += " + x-amz-checksum-sha256"
            if server != _b64(digests.sha256):
                return Verification(False, key, method, "server's sha256 differs", remote)
        return Verification(True, key, method, remote=remote)

    def read(self, key: str) -> Iterator[bytes]:
        with self._errors(key):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if http_status(exc) == 404 and error_code(exc) != "NoSuchBucket":
                    raise self._mismatch(key, "missing") from exc
                raise
            self._whole(answer, "ContentLength", "GetObject")  # else a cut body looks complete
            body = answer["Body"]
            try:
                while chunk := body.read(READ_CHUNK):
                    yield chunk
            finally:
                body.close()

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        root = self.options.prefix.strip("/")
        if not prefix and root and "{prefix}" in self._layout:
            prefix = root + "/"
        pages = self.client.get_paginator("list_objects_v2")
        with self._errors(prefix or "(bucket)"):
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                self._whole(page, "IsTruncated", "ListObjectsV2")
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if is_temp_name(key.rpartition("/")[2]):
                        continue
                    etag = unquote_etag(item.get("ETag"))
                    md5 = etag if etag and MD5_ETAG.fullmatch(etag) else None
                    yield RemoteObject(key=key, size=item["Size"], md5=md5, etag=etag)

    def remove_snapshot(self, key: str) -> None:
        require_snapshot_key(self.name, key)
        with self._errors(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def check(self) -> ConnectionReport:
        report = ConnectionReport(self.name, self.kind, False, False, False)
        leaf = f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
        probe = f"{self.options.prefix.strip('/')}/{leaf}".lstrip("/")
        body = b"picpipe probe"
        try:
            with self._errors(probe):
                self.client.put_object(
                    Bucket=self.bucket, Key=probe, Body=body, ContentMD5=_b64_md5(body)
                )
        except DestinationUnavailable as exc:
            return replace(report, detail=str(exc))
        except DestinationAuthFailed as exc:
            # AccessDenied: the key is good but may not write here.
            denied = error_code(exc.__cause__) == "AccessDenied"
            return replace(report, reachable=True, authenticated=denied, detail=str(exc))
        except DestinationError as exc:
            reached = isinstance(exc.__cause__, ClientError)
            return replace(report, reachable=reached, authenticated=reached, detail=str(exc))
        report = replace(report, reachable=True, authenticated=True, writable=True)
        try:
            with self._errors(probe):
                self.client.delete_object(Bucket=self.bucket, Key=probe)  # our own probe only
        except DestinationError as exc:
            return replace(report, detail=f"the probe {probe} could not be removed ({exc})")
        where = mask_url(self.options.endpoint_url) if self.options.endpoint_url else "AWS"
        return replace(report, detail=f"bucket {self.bucket} at {where}")

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- helpers ---------------------------------------------------------------------------

    def _new_client(self) -> Any:
        opts = self.options
        key_id = resolve_secret(
            self.name, "access_key_id", opts.access_key_id,
            opts.access_key_id_env, opts.access_key_id_file,
        )  # fmt: skip
        secret = resolve_secret(
            self.name, "secret_access_key", opts.secret_access_key,
            opts.secret_access_key_env, opts.secret_access_key_file,
        )  # fmt: skip
        if (key_id is None) != (secret is None):
            raise DestinationMisconfigured(
                destination=self.name,
                detail="give both access_key_id and secret_access_key, or neither",
            )
        self._secrets = tuple(s for s in (secret, key_id) if s)
        for noisy in _QUIET_LOGGERS:  # their DEBUG output carries request headers
            if logging.getLogger(noisy).level == logging.NOTSET:
                logging.getLogger(noisy).setLevel(logging.WARNING)
        config = Config(
            connect_timeout=5,
            read_timeout=opts.read_timeout,
            # One quick retry inside boto3; jobs/retry.py owns the real backoff.
            retries={"total_max_attempts": 2, "mode": "standard"},
            max_pool_connections=max(16, opts.concurrency or 0),
            # Content-MD5 (and x-amz-checksum-sha256) cover the body; signing it as well would
            # hash every byte once more on http endpoints (botocore skips it on https anyway).
            s3={"addressing_style": opts.addressing_style, "payload_signing_enabled": False},
            # Our own Content-MD5 and SHA-256 headers; no CRC trailers (aws-chunked bodies),
            # which many S3-compatible servers refuse.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra=f"picpipe/{__version__}",
        )
        try:
            return boto3.session.Session().client(
                "s3",
                endpoint_url=opts.endpoint_url,
                region_name=opts.region,
                aws_access_key_id=key_id,
                aws_secret_access_key=secret,
                verify=opts.verify_tls,
                config=config,
            )
        except (BotoCoreError, ValueError) as exc:
            raise DestinationMisconfigured(
                destination=self.name, detail=f"cannot set up the S3 client ({self._redact(exc)})"
            ) from exc

    def _put_single(
        self, key: str, data: BinaryIO, digests: Digests, fields: dict[str, Any]
    ) -> RemoteObject:
        body = read_exactly(data, digests.size + 1)  # one byte more: a longer stream is wrong
        if len(body) != digests.size:
            raise self._mismatch(key, NOT_THE_ASSET)
        # With the engine's MD5 (same read as its SHA-256 check) the server's MD5 ETag proves
        # the bytes; without one, hash here before anything is sent.
        trusted_md5 = digests.md5 is not None
        if not trusted_md5 and sha256_bytes(body) != digests.sha256:
            raise self._mismatch(key, NOT_THE_ASSET)
        md5 = digests.md5 or md5_bytes(body).hex()
        if self.options.checksum_header:
            fields = {
                **fields,
                "ChecksumAlgorithm": "SHA256",
                "ChecksumSHA256": _b64(digests.sha256),
            }
        with self._errors(key):
            answer = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentMD5=_b64(md5), **fields
            )
        etag = md5_etag(answer)
        if etag is not None and etag != md5:
            raise self._mismatch(key, "the server's ETag is not the MD5 sent")
        if etag is None and trusted_md5 and sha256_bytes(body) != digests.sha256:
            raise self._mismatch(key, NOT_THE_ASSET)  # stored, but never marked verified
        checksum = answer.get("ChecksumSHA256")
        if checksum and fields.get("ChecksumSHA256") and checksum != fields["ChecksumSHA256"]:
            raise self._mismatch(key, "the server's SHA-256 is not the one sent")
        return RemoteObject(
            key=key,
            size=digests.size,
            sha256=digests.sha256,
            md5=etag,
            etag=etag_of(answer),
            server_checked=etag is not None and trusted_md5,
        )

    def _multipart(self) -> MultipartUpload:
        # The client is passed as a getter: it is built on first use (and again after close).
        return MultipartUpload(
            self.name,
            self.bucket,
            lambda: self.client,
            self._errors,
            self.stat,
            part_size=self.options.part_size_mb * MIB,
        )

    def _verify_deep(self, key: str, digests: Digests) -> Verification:
        return verify_by_reading(key, self.read(key), digests)

    def _head(self, key: str, *, checksum: bool = False) -> dict[str, Any] | None:
        args = {"Bucket": self.bucket, "Key": key}
        if checksum and self.options.checksum_header:
            args["ChecksumMode"] = "ENABLED"
        with self._errors(key):
            try:
                head: dict[str, Any] = self.client.head_object(**args)
            except ClientError as exc:
                if http_status(exc) == 404:  # HEAD has no body: a missing bucket looks the same
                    return None
                raise
        return self._whole(head, "ContentLength", "HeadObject")

    def _whole(self, answer: dict[str, Any], field: str, operation: str) -> dict[str, Any]:
        """``answer`` when it has ``field``. A connection cut inside the headers reads as an
        empty 200 (http.client stops at EOF as at a blank line): never take that as done."""
        return whole_answer(answer, field, operation, self.name)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Re-raise SDK and transport errors as picpipe errors (``from`` the original)."""
        try:
            yield
        except (ClientError, BotoCoreError, Urllib3Error, OSError, ResponseParserError) as exc:
            raise map_error(exc, destination=self.name, key=key, hide=self._secrets) from exc
        except ValueError as exc:  # botocore parsing a garbled header (a cut connection)
            raise map_error(exc, destination=self.name, key=key, hide=self._secrets) from exc

    def _mismatch(self, key: str, detail: str) -> IntegrityMismatch:
        return IntegrityMismatch(destination=self.name, key=key, detail=detail)

    def _redact(self, exc: BaseException) -> str:
        return redact(str(exc), self._secrets)


def _remote(key: str, head: dict[str, Any]) -> RemoteObject:
    sha = str(head.get("Metadata", {}).get(META_SHA256, "")).lower()
    return RemoteObject(
        key=key,
        size=int(head["ContentLength"]),
        sha256=sha if re.fullmatch(r"[0-9a-f]{64}", sha) else None,
        md5=md5_etag(head),
        etag=etag_of(head),
        extra={"storage_class": head.get("StorageClass", "STANDARD")},
    )


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _b64_md5(data: bytes) -> str:
    return base64.b64encode(md5_bytes(data)).decode()
