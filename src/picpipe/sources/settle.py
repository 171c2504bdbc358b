"""The settle rule of live sources: a file is ingested only once it stopped changing.

Settled means (size, mtime_ns, inode) unchanged across observations spanning at least the
settle time; after hashing, the file is stat'ed again and the hash discarded if anything
moved (`still_same`). This absorbs slow copies, a downloader's rename followed by an
``os.utime`` (icloudpd) and in-place rewrites right after a download (EXIF dates).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

Signature = tuple[int, int, int]  # size, mtime_ns, inode


def signature_of(path: str | bytes | os.PathLike[str]) -> Signature | None:
    """(size, mtime_ns, inode) of ``path``, or None when it is gone or not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not os.path.isfile(path):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def still_same(path: str | bytes | os.PathLike[str], before: Signature) -> bool:
    """After hashing: True only if the file is exactly as it was when it settled."""
    return signature_of(path) == before


@dataclass(slots=True)
class _Seen:
    signature: Signature
    since: float  # when this signature was first observed
    last: float  # when it was last observed (unchanged)


@dataclass(slots=True)
class Settler:
    """Tracks candidate files between polls; `settled` hands out those that stopped moving.

    ``settle_seconds`` is the quiet time required; ``clock`` is monotonic seconds (a test
    passes its own). Not thread-safe: one watcher loop owns it.
    """

    settle_seconds: float
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def observe(self, ref: str, signature: Signature | None) -> None:
        """Record one observation; a changed signature starts the quiet time again, and a
        vanished file (None) is forgotten."""
        now = self.clock()
        if signature is None:
            self._seen.pop(ref, None)
            return
        seen = self._seen.get(ref)
        if seen is None or seen.signature != signature:
            self._seen[ref] = _Seen(signature, now, now)
        else:
            seen.last = now

    def settled(self) -> dict[str, Signature]:
        """Files whose signature stayed the same across observations spanning the settle
        time; they are removed from tracking (observe them again to track them anew)."""
        ready = {
            ref: seen.signature
            for ref, seen in self._seen.items()
            if seen.last - seen.since >= self.settle_seconds
        }
        for ref in ready:
            del self._seen[ref]
        return ready

    def pending(self) -> int:
        """Files being tracked that have not settled yet (the watcher's queue length)."""
        return len(self._seen)

    def forget(self, ref: str) -> None:
        self._seen.pop(ref, None)
