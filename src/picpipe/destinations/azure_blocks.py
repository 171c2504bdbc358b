"""Block uploads for the ``azure`` destination, and the stream checks both upload paths use.

`BlockUpload` stages an asset above the single-put threshold as blocks with deterministic ids
(asset, block size, index) and per-block transactional MD5s, ``block_concurrency`` at a time,
then commits them with Put Block List, the whole blob's MD5 as Content-MD5. The service does not
check that MD5 against the blocks, so every byte read is hashed here and bytes that are not the
asset's are never committed. An interrupted upload resumes: blocks already staged under the
right id and size (the service keeps uncommitted blocks for a week) are not sent again.

`read_exactly`, `check_stream_end` and `etag_of` are shared with `picpipe.destinations.azure`,
which imports this module; this module never imports that one.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, BinaryIO

from azure.core.exceptions import AzureError, ResourceNotFoundError

from picpipe.destinations.azure_sdk import error_code
from picpipe.errors import DestinationRejected, IntegrityMismatch
from picpipe.hashing import md5_bytes, new_hasher

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.storage.blob import BlobClient, ContentSettings, StandardBlobTier

    from picpipe.destinations.base import Digests
    from picpipe.errors import DestinationError

MIB = 1 << 20
MAX_BLOCKS = 50_000  # per blob, a service limit


class BlockUpload:
    """The block uploads of one Azure destination (one container).

    ``blob(key)`` returns the destination's client for a blob (the container client behind it
    is built on first use); ``error(exc, key)`` turns an SDK error into the picpipe error.
    ``block_size_mb``, ``concurrency`` and ``tier`` are the destination's options.
    """

    def __init__(
        self,
        destination: str,
        blob: Callable[[str], BlobClient],
        error: Callable[[AzureError, str], DestinationError],
        *,
        block_size_mb: int,
        concurrency: int,
        tier: StandardBlobTier | None,
    ) -> None:
        self.destination = destination
        self._blob = blob
        self._error = error
        self._block_size_mb = block_size_mb
        self._concurrency = concurrency
        self._tier = tier

    def put(
        self,
        key: str,
        data: BinaryIO,
        digests: Digests,
        settings: ContentSettings,
        metadata: dict[str, str],
        checkpoint: Callable[[dict[str, Any]], None] | None,
    ) -> tuple[str, str | None]:
        """Stage ``data`` as blocks under ``key`` and commit them; returns (MD5 hex, ETag).

        ``settings`` gets the whole blob's MD5 as Content-MD5 and is committed with
        ``metadata``. ``checkpoint`` receives ``{"block_size", "blocks", "staged"}`` as blocks
        finish; it is informational, since the service's list of uncommitted blocks decides
        what is sent again. Raises `DestinationRejected` when the blob needs more than 50,000
        blocks, `IntegrityMismatch` when the stream is not the asset's bytes (nothing is
        committed), and the mapped SDK error otherwise.
        """
        block = self._block_size_mb * MIB
        count = -(-digests.size // block)
        if count > MAX_BLOCKS:
            raise DestinationRejected(
                destination=self.destination,
                key=key,
                detail=f"{count} blocks of {self._block_size_mb} MiB exceed the service's "
                f"{MAX_BLOCKS}; raise block_size_mb",
            )
        # Fixed width (the service wants equal-length ids); the block size is part of the id
        # so a changed setting never reuses blocks cut at other offsets.
        ids = [f"{digests.sha256[:16]}-{block:010d}-{i:06d}" for i in range(count)]
        blob = self._blob(key)
        staged = self._staged_blocks(blob, key)
        sha256 = new_hasher()
        md5 = new_hasher("md5") if digests.md5 is None else None
        done = 0  # blocks known to be staged (before, or by this call)
        # Reading and hashing stay in order on this thread; up to block_concurrency blocks are
        # in flight at once (memory: that many blocks), as rclone's upload_concurrency does.
        pool = ThreadPoolExecutor(self._concurrency, f"{self.destination}-blocks")
        pending: set[Future[None]] = set()
        try:
            for index, block_id in enumerate(ids):
                size = min(block, digests.size - index * block)
                chunk = read_exactly(data, size, self.destination, key)
                sha256.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                if staged.get(block_id) == size:
                    done += 1  # staged before an interruption; ids are deterministic
                    continue
                if len(pending) >= self._concurrency:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    done += _results(finished)
                    if checkpoint is not None:  # informational: the service's list decides
                        checkpoint({"block_size": block, "blocks": count, "staged": done})
                pending.add(pool.submit(self._stage, blob, key, block_id, chunk))
            done += _results(pending)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        check_stream_end(data, digests, sha256.hexdigest(), self.destination, key)
        whole = digests.md5 if md5 is None else md5.hexdigest()
        assert whole is not None
        settings.content_md5 = bytearray.fromhex(whole)
        try:
            committed = blob.commit_block_list(
                ids,  # type: ignore[arg-type]  # the SDK accepts ids as well as BlobBlocks
                content_settings=settings,
                metadata=metadata,
                standard_blob_tier=self._tier,
            )
        except AzureError as exc:
            raise self._error(exc, key) from exc
        return whole, etag_of(committed)

    def _stage(self, blob: BlobClient, key: str, block_id: str, chunk: bytes) -> None:
        try:
            blob.stage_block(
                block_id,
                chunk,
                length=len(chunk),
                transactional_content_md5=md5_bytes(chunk),
            )
        except AzureError as exc:
            raise self._error(exc, key) from exc

    def _staged_blocks(self, blob: BlobClient, key: str) -> dict[str, int]:
        """Block id → size of the blocks staged but not yet committed under ``key``."""
        try:
            _, uncommitted = blob.get_block_list("uncommitted")
        except ResourceNotFoundError as exc:
            if error_code(exc) != "BlobNotFound":
                raise self._error(exc, key) from exc
            return {}
        except AzureError as exc:
            raise self._error(exc, key) from exc
        return {b.id: b.size for b in uncommitted}


def read_exactly(data: BinaryIO, size: int, destination: str, key: str) -> bytes:
    """``size`` bytes of ``data``; `IntegrityMismatch` if the stream ends before them."""
    parts: list[bytes] = []
    left = size
    while left and (chunk := data.read(left)):
        parts.append(chunk)
        left -= len(chunk)
    if left:
        raise _mismatch(destination, key, "the stream ended before its size")
    return b"".join(parts)  # no copy for one part


def check_stream_end(
    data: BinaryIO, digests: Digests, sha256: str | None, destination: str, key: str
) -> None:
    """Refuse (`IntegrityMismatch`) a stream longer than the asset, or whose bytes hashed to
    another SHA-256 (``sha256``: None when they were not hashed)."""
    if data.read(1):
        raise _mismatch(destination, key, "the stream is longer than its size")
    if sha256 is not None and sha256 != digests.sha256:
        raise _mismatch(destination, key, "the bytes read are not the asset's (sha256)")


def etag_of(headers: dict[str, Any]) -> str | None:
    """The ETag of an SDK answer's headers, or None."""
    etag = headers.get("etag")
    return str(etag) if etag else None


def _mismatch(destination: str, key: str, detail: str) -> IntegrityMismatch:
    return IntegrityMismatch(destination=destination, key=key, detail=detail)


def _results(futures: set[Future[None]]) -> int:
    """Wait for ``futures``; raise the first failure. Returns how many there were."""
    for future in futures:
        future.result()
    return len(futures)
