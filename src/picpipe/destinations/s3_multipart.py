"""Multipart uploads for the ``s3`` destination, and the ETag helpers that both upload paths use.

`MultipartUpload` sends an object bigger than the single-PUT threshold in parts, so it becomes
visible only at CompleteMultipartUpload. The upload resumes: its id is checkpointed as soon as
it is created, and a later put lists the parts the server holds and sends only those whose ETag
is not the MD5 of our bytes. Every byte read is hashed, and the upload is never completed with
bytes that are not the asset's.

The module-level helpers (`read_exactly`, `etag_of`, `md5_etag`, `unquote_etag`,
`whole_answer`) are shared with `picpipe.destinations.s3`, which imports this module; this
module never imports that one.
"""

from __future__ import annotations

import base64
import logging
import re
from typing import TYPE_CHECKING, Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from picpipe.destinations.base import RemoteObject
from picpipe.destinations.s3_errors import error_code
from picpipe.errors import DestinationError, DestinationUnavailable, IntegrityMismatch
from picpipe.hashing import md5_bytes, new_hasher

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from picpipe.destinations.base import Digests

log = logging.getLogger(__name__)

MIB = 1 << 20
MAX_PARTS = 10_000  # S3's limits per multipart upload
MIN_PART = 5 * MIB
MD5_ETAG = re.compile(r"[0-9a-f]{32}")
NOT_THE_ASSET = "the bytes read are not the asset's"
_MULTIPART_ETAG = re.compile(r"[0-9a-f]{32}-\d+")
_KMS = {"aws:kms", "aws:kms:dsse"}  # with these, even a single-part ETag is not the MD5
_Parts = list[dict[str, Any]]
_PartMd5s = list[bytes]
_Held = dict[int, tuple[str, int]]  # part number → (md5 hex, size) of the parts the server holds


class MultipartUpload:
    """The multipart uploads of one S3 destination (one bucket).

    ``client`` returns the destination's boto3 client; it is asked for at each request, never
    kept, because the destination builds it on first use and again after ``close``.
    ``errors(key)`` is the destination's context manager that re-raises SDK and transport
    errors as picpipe errors; ``stat`` is its ``stat``, used to tell an upload that completed
    but whose answer was lost from one that never did. ``part_size`` is the wanted part size in
    bytes (grown to stay within S3's 10,000 parts).
    """

    def __init__(
        self,
        destination: str,
        bucket: str,
        client: Callable[[], Any],
        errors: Callable[[str], AbstractContextManager[None]],
        stat: Callable[[str], RemoteObject | None],
        *,
        part_size: int,
    ) -> None:
        self.destination = destination
        self.bucket = bucket
        self._client = client
        self._errors = errors
        self._stat = stat
        self._part_size = part_size

    def put(
        self,
        key: str,
        data: BinaryIO,
        digests: Digests,
        fields: dict[str, Any],
        resume: dict[str, Any] | None,
        checkpoint: Callable[[dict[str, Any]], None] | None,
    ) -> RemoteObject:
        """Upload ``data`` to ``key`` in parts and complete the upload.

        ``fields`` go to CreateMultipartUpload (metadata, content type, storage class).
        ``resume`` is a state once given to ``checkpoint``: its upload continues when key and
        part size still fit, else it is aborted and a new one starts; ``checkpoint`` receives
        ``{"upload_id", "key", "part_size"}`` right after an upload is created.
        Raises `IntegrityMismatch` when the stream is not the asset's bytes or the server's
        ETags are not of the parts sent; on a failure that is not retryable the upload is
        aborted, on a retryable one it is kept for the next try.
        """
        upload_id, part_size, held = self._resumed(key, digests.size, resume)
        if upload_id is None:
            done = self._stat(key) if resume else None  # a lost answer to the last Complete
            if done is not None and (done.size, done.sha256) == (digests.size, digests.sha256):
                return done
            part_size = _part_size(digests.size, self._part_size)
            with self._errors(key):
                created = self._client().create_multipart_upload(
                    Bucket=self.bucket, Key=key, **fields
                )
            created = whole_answer(created, "UploadId", "CreateMultipartUpload", self.destination)
            upload_id = created["UploadId"]
            if checkpoint is not None:
                checkpoint({"upload_id": upload_id, "key": key, "part_size": part_size})
        try:
            parts, md5s = self._send_parts(key, upload_id, data, digests, part_size, held)
            with self._errors(key):
                answer = self._client().complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except DestinationError as exc:
            if not exc.retryable:  # a retryable failure keeps the upload for the next try
                self.abort_quietly(key, upload_id)
            raise
        etag = etag_of(answer)
        if etag is None:  # S3 may answer 200 and put an error in the body: this body was cut
            done = self._stat(key)
            if done is None or (done.size, done.sha256) != (digests.size, digests.sha256):
                raise DestinationUnavailable(
                    destination=self.destination,
                    detail="CompleteMultipartUpload's answer was cut short",
                )
            return done
        expected = f"{md5_bytes(b''.join(md5s)).hex()}-{len(md5s)}"
        if _MULTIPART_ETAG.fullmatch(etag) and etag != expected:
            raise self._mismatch(key, "the server's ETag is not of the parts sent")
        return RemoteObject(key=key, size=digests.size, sha256=digests.sha256, etag=etag)

    def abort_quietly(self, key: str, upload_id: str) -> None:
        """Abort the upload ``upload_id`` of ``key``; a failure is only logged (at DEBUG)."""
        try:
            self._client().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError, DestinationError) as exc:
            log.debug("%s: could not abort the upload of %s: %s", self.destination, key, type(exc))

    def _send_parts(
        self,
        key: str,
        upload_id: str,
        data: BinaryIO,
        digests: Digests,
        part_size: int,
        held: _Held,
    ) -> tuple[_Parts, _PartMd5s]:
        """Upload the parts the server does not hold yet; hash every byte read on the way."""
        whole = new_hasher()
        parts: _Parts = []
        md5s: _PartMd5s = []
        for number, offset in enumerate(range(0, digests.size, part_size), start=1):
            chunk = read_exactly(data, min(part_size, digests.size - offset))
            if len(chunk) != min(part_size, digests.size - offset):
                raise self._mismatch(key, NOT_THE_ASSET)  # the stream ended early
            whole.update(chunk)
            md5 = new_hasher("md5")
            md5.update(chunk)
            if held.get(number) != (md5.hexdigest(), len(chunk)):
                with self._errors(key):
                    answer = self._client().upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ContentMD5=base64.b64encode(md5.digest()).decode(),
                    )
                etag = md5_etag(answer)
                if etag is not None and etag != md5.hexdigest():
                    raise self._mismatch(key, f"part {number}: the ETag is not its MD5")
            parts.append({"PartNumber": number, "ETag": f'"{md5.hexdigest()}"'})
            md5s.append(md5.digest())
        if data.read(1) or whole.hexdigest() != digests.sha256:
            raise self._mismatch(key, NOT_THE_ASSET)
        return parts, md5s

    def _resumed(
        self, key: str, size: int, resume: dict[str, Any] | None
    ) -> tuple[str | None, int, _Held]:
        """The checkpointed upload and the parts the server holds (number → md5, size), or
        ``(None, 0, {})`` when there is nothing to resume."""
        if not resume:
            return None, 0, {}
        upload_id, old_key, part_size = (resume.get(k) for k in ("upload_id", "key", "part_size"))
        if not isinstance(upload_id, str) or not isinstance(old_key, str):
            return None, 0, {}
        if (
            not isinstance(part_size, int)
            or old_key != key
            or part_size != _part_size(size, part_size)
        ):
            self.abort_quietly(old_key, upload_id)  # ours, and it can no longer be finished
            return None, 0, {}
        held: _Held = {}
        pages = self._client().get_paginator("list_parts")
        with self._errors(key):
            try:
                for page in pages.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                    for part in page.get("Parts", []):
                        held[part["PartNumber"]] = (unquote_etag(part["ETag"]) or "", part["Size"])
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise
                log.debug("%s: upload of %s is gone; starting over", self.destination, key)
                return None, 0, {}
        return upload_id, part_size, held

    def _mismatch(self, key: str, detail: str) -> IntegrityMismatch:
        return IntegrityMismatch(destination=self.destination, key=key, detail=detail)


def _part_size(size: int, wanted: int) -> int:
    """``wanted`` (at least 5 MiB), grown in whole MiB so ``size`` needs ≤ 10,000 parts."""
    least = -(-size // MAX_PARTS)
    return max(wanted, MIN_PART, -(-least // MIB) * MIB)


def read_exactly(data: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at the end of the stream)."""
    chunks: list[bytes] = []
    left = size
    while left > 0 and (chunk := data.read(left)):
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def whole_answer(
    answer: dict[str, Any], field: str, operation: str, destination: str
) -> dict[str, Any]:
    """``answer`` when it has ``field``, else `DestinationUnavailable`. A connection cut inside
    the headers reads as an empty 200 (http.client stops at EOF as at a blank line): never take
    that as done."""
    if field not in answer:
        raise DestinationUnavailable(
            destination=destination, detail=f"the answer to {operation} was cut short"
        )
    return answer


def md5_etag(answer: dict[str, Any]) -> str | None:
    """The ETag when it is the body's MD5 (single part, no KMS or customer-key encryption)."""
    etag = etag_of(answer)
    if not etag or not MD5_ETAG.fullmatch(etag):
        return None
    if answer.get("ServerSideEncryption") in _KMS or answer.get("SSECustomerAlgorithm"):
        return None
    return etag


def etag_of(answer: dict[str, Any]) -> str | None:
    """The answer's ETag, unquoted and lower-case, or None."""
    return unquote_etag(answer.get("ETag"))


def unquote_etag(etag: str | None) -> str | None:
    """``etag`` without its quotes, lower-case (None stays None, "" becomes None)."""
    return etag.strip('"').lower() if etag else None
