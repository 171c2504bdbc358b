"""Reading an original for replication: once per asset for every destination that needs it.

When a kind wants MD5 or SHA-1, the original is read and hashed once (kept in memory up to
`IN_MEMORY_LIMIT`) and its bytes feed every upload; otherwise each upload streams the library
file (the page cache serves repeats). Either way the library copy's SHA-256 is checked first,
so rot in the library is never replicated.
"""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any, BinaryIO

from picpipe.destinations.base import Digests
from picpipe.errors import UnreadableFile, VanishedFile
from picpipe.hashing import digest_stream

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.jobs.sync_plan import SyncJob

IN_MEMORY_LIMIT = 64 << 20  # read once into memory for several uploads below this size


def asset_digests(
    library_root: Path, job: SyncJob, shared: dict[str, Any], needs: set[str], lock: threading.Lock
) -> Digests:
    """The asset's digests; MD5/SHA-1 computed once per asset (and the bytes kept in
    ``shared`` for the other destinations). Raises UnreadableFile when the library original
    does not match its checksum."""
    asset = job.asset
    if not needs:
        return Digests(asset.size, asset.sha256)
    with lock:
        ready = shared.get("digests")
        if ready is None:
            own = shared.setdefault("lock", threading.Lock())
        else:
            return ready  # type: ignore[no-any-return]
    with own:
        if "digests" not in shared:
            keep = asset.size <= IN_MEMORY_LIMIT
            with open_original(library_root, job, {}) as stream:
                found, size, data = digest_stream(stream, ("sha256", *sorted(needs)), keep=keep)
            if found["sha256"] != asset.sha256 or size != asset.size:
                raise UnreadableFile(
                    path=job.library_path,
                    detail="the library original does not match its checksum; run picpipe verify",
                )
            shared["data"] = data
            shared["digests"] = Digests(size, asset.sha256, found.get("md5"), found.get("sha1"))
    return shared["digests"]  # type: ignore[no-any-return]


def open_original(library_root: Path, job: SyncJob, shared: dict[str, Any]) -> Opened:
    """The bytes kept in ``shared``, else the library file (VanishedFile, UnreadableFile)."""
    data = shared.get("data")
    if data is not None:
        return Opened(io.BytesIO(data))
    path = library_root / job.library_path
    try:
        return Opened(open(path, "rb"))
    except FileNotFoundError as exc:
        raise VanishedFile(path=job.library_path) from exc
    except OSError as exc:
        raise UnreadableFile(path=job.library_path, detail=exc.strerror) from exc


class Opened:
    """A stream as a context manager that closes it (BytesIO or file)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def __enter__(self) -> BinaryIO:
        return self.stream

    def __exit__(self, *exc: object) -> None:
        self.stream.close()
