"""An in-memory reference source: the smallest thing that honours the Source contract.

Files are bytes in a dict keyed by ref; ``World`` changes them behind the source's back (as a
camera, a downloader or another machine would). It has no local paths, so imports go through
``open`` alone, as for a remote kind.
"""

from __future__ import annotations

import fnmatch
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, ClassVar

from picpipe.config import ScanOptions
from picpipe.errors import TornRead, UnreadableFile, VanishedFile
from picpipe.sources.base import FolderListing, ScanProblem, SourceCaps, SourceEntry

if TYPE_CHECKING:
    from typing_extensions import Buffer


@dataclass
class MemoryFile:
    data: bytes
    mtime_ns: int
    unreadable: bool = False


@dataclass
class MemoryStore:
    files: dict[str, MemoryFile] = field(default_factory=dict)
    bytes_read: int = 0  # content served through open (the listing must add nothing)
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemorySource:
    kind: ClassVar[str] = "memory"
    caps: ClassVar[SourceCaps] = SourceCaps(can_watch=True, can_remove=True)

    def __init__(self, name: str, store: MemoryStore, scan: ScanOptions | None = None) -> None:
        self.name = name
        self.store = store
        self.scan = scan or ScanOptions()
        self._media = self.scan.media_extensions()

    @property
    def location(self) -> str:
        return f"memory:{self.name}"

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        with self.store.lock:
            snapshot = {ref: (len(f.data), f.mtime_ns) for ref, f in self.store.files.items()}
        folders: dict[str, list[SourceEntry]] = {}
        for ref in sorted(snapshot):
            size, mtime_ns = snapshot[ref]
            folder, _, name = ref.rpartition("/")
            folders.setdefault(folder, []).append(self._entry(ref, name, size, mtime_ns))
        for folder, entries in folders.items():
            yield FolderListing(folder, entries)

    def _entry(self, ref: str, name: str, size: int, mtime_ns: int) -> SourceEntry:
        skipped = next(
            (
                f"temporary name ({p})"
                for p in self.scan.ignored_patterns
                if fnmatch.fnmatch(name, p)
            ),
            None,
        )
        ext = name.rpartition(".")[2].lower() if "." in name else ""
        sniff = skipped is None and ext not in self._media
        return SourceEntry(ref, name, size, mtime_ns, skipped=skipped, sniff=sniff)

    @contextmanager
    def open(self, entry: SourceEntry) -> Iterator[BinaryIO]:
        with self.store.lock:
            found = self.store.files.get(entry.ref)
        if found is None:
            raise VanishedFile(path=entry.ref)
        if found.unreadable:
            raise UnreadableFile(path=entry.ref, detail="Input/output error")
        if (len(found.data), found.mtime_ns) != (entry.size, entry.mtime_ns):
            raise TornRead(path=entry.ref)
        stream = _CountingStream(found.data, self.store)
        yield stream
        with self.store.lock:
            after = self.store.files.get(entry.ref)
        if after is None:
            raise VanishedFile(path=entry.ref)
        if after is not found or after.mtime_ns != found.mtime_ns:
            raise TornRead(path=entry.ref)

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]:
        known = self._stats()
        while not stop.wait(0.05):
            now = self._stats()
            changed = [
                self._entry(ref, ref.rpartition("/")[2], *stat)
                for ref, stat in now.items()
                if known.get(ref) != stat
            ]
            known = now
            if changed:
                yield changed

    def remove(self, entry: SourceEntry) -> None:
        with self.store.lock:
            self.store.files.pop(entry.ref, None)

    def close(self) -> None:
        return None

    def _stats(self) -> dict[str, tuple[int, int]]:
        with self.store.lock:
            return {ref: (len(f.data), f.mtime_ns) for ref, f in self.store.files.items()}


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes, store: MemoryStore) -> None:
        super().__init__(data)
        self._store = store

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        with self._store.lock:
            self._store.bytes_read += len(chunk)
        return chunk

    def readinto(self, buffer: Buffer) -> int:
        count = super().readinto(buffer)
        with self._store.lock:
            self._store.bytes_read += count
        return count
