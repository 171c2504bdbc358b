"""What the ``immich`` destination sends with an upload, derived from the asset and its bytes.

- the dates Immich 3 wants, with a UTC offset (`capture_time`, `modified_time`), and a video's
  duration as whole milliseconds (`duration_ms`): pure functions of an `AssetRef`;
- the SHA-1 of the bytes: `sha1_of` when the engine did not supply one, and `HashingReader`,
  which hashes what is actually sent so ``put`` can tell the stream did not change on the way.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, BinaryIO

from picpipe.destinations.base import READ_CHUNK
from picpipe.hashing import new_hasher

if TYPE_CHECKING:
    from picpipe.destinations.base import AssetRef


def capture_time(asset: AssetRef) -> datetime:
    """When the photo was taken, with its UTC offset (naive wall time → UTC when unknown)."""
    taken = asset.taken_local
    if taken.tzinfo is not None:
        return taken
    offset = asset.taken_offset_min
    if offset is None or abs(offset) >= 24 * 60:
        return taken.replace(tzinfo=UTC)
    return taken.replace(tzinfo=timezone(timedelta(minutes=offset)))


def modified_time(asset: AssetRef) -> datetime:
    """The source file's mtime (naive = UTC), or the capture time when it is unknown."""
    if asset.modified is None:
        return capture_time(asset)
    return asset.modified if asset.modified.tzinfo else asset.modified.replace(tzinfo=UTC)


def duration_ms(asset: AssetRef) -> int | None:
    """Video duration in whole milliseconds (Immich 3 wants an integer); None for stills."""
    if asset.kind != "video" or asset.duration is None:
        return None
    return max(0, round(asset.duration * 1000))


def sha1_of(data: BinaryIO) -> str:
    """SHA-1 of a seekable stream when the engine did not supply it (it normally does).

    Reads ``data`` whole and leaves it rewound to the start.
    """
    data.seek(0)
    digest = new_hasher("sha1")
    while chunk := data.read(READ_CHUNK):
        digest.update(chunk)
    data.seek(0)
    return digest.hexdigest()


class HashingReader(io.RawIOBase):
    """Passes reads through while hashing them (SHA-1), so ``put`` knows what it sent.

    httpx finds the length by seeking to the end and back and rewinds before sending; a seek
    to the start resets the hash.
    """

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self._digest = new_hasher("sha1")
        self.size = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._inner.read(size)
        self._digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        position = self._inner.seek(offset, whence)
        if position == 0:
            self._digest = new_hasher("sha1")
            self.size = 0
        return position

    def tell(self) -> int:
        return self._inner.tell()

    def hexdigest(self) -> str:
        """The SHA-1 of the bytes read since the last rewind."""
        return self._digest.hexdigest()
