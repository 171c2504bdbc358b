"""Decide "unchanged" from (path, size, mtime, ctime) without reading files or per-file queries.

Sources list one folder's files together (`FolderListing`). For each folder the scan computes
a digest of its (ref, size, mtime_ns) list; when it equals the digest stored after the folder
last settled, every file in it is unchanged and no per-file row is even loaded. Only folders
whose digest differs load their rows (one query per folder) and compare file by file.
"""

from __future__ import annotations

import hashlib  # blake2b of a folder listing: a change marker, not content (hashing.py)
import marshal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from picpipe.catalog.queries import KnownFile, folder_digests, folder_files, folder_skipped

if TYPE_CHECKING:
    from picpipe.catalog.db import Catalog
    from picpipe.sources.base import FolderListing, SourceEntry

SETTLED_STATES = frozenset({"imported", "duplicate"})


def folder_of(ref: str) -> str:
    """The folder part of a ref (``""`` for the top of the source)."""
    return ref.rpartition("/")[0]


def folder_digest(listing: FolderListing) -> str:
    """A digest of the folder's fingerprint (names, sizes, mtimes in listing order).

    Not sorted: an unchanged folder lists in the same order, and a reordered listing only
    costs a file-by-file comparison, never a wrong answer.
    """
    # marshal serialises the plain tuples in C, several times faster than repr; its format
    # may change with a Python upgrade, which costs one file-by-file rescan, nothing more.
    data = marshal.dumps(listing.fingerprint)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def unchanged(
    known: KnownFile | None, size: int, mtime_ns: int, ctime_ns: int | None = None
) -> bool:
    """Imported (or found a duplicate) before with the same size, mtime and ctime: nothing to
    read. A failed file is never unchanged: it is tried again on every run until it imports
    (a chmod that fixes "Permission denied" changes nothing else). A ctime recorded before
    that differs now means a chmod or a rewrite that kept the mtime."""
    if known is None or known.size != size or known.mtime_ns != mtime_ns:
        return False
    if known.ctime_ns is not None and ctime_ns is not None and known.ctime_ns != ctime_ns:
        return False
    return known.state in SETTLED_STATES


def still_skipped(known: KnownFile | None, entry: SourceEntry) -> bool:
    """A file to sniff that was found not to be media, with the same size, mtime and ctime:
    skipped again without reading it."""
    return (
        known is not None
        and known.state == "skipped"
        and unchanged_stat(known, entry.size, entry.mtime_ns, entry.ctime_ns)
    )


def skip_row_current(known: KnownFile | None, entry: SourceEntry) -> bool:
    """A file skipped by name whose catalog row needs no write: skipped already, same stat,
    present; or imported before (a rule added since keeps its provenance row as it was)."""
    if known is None or known.gone:
        return False
    if known.state in SETTLED_STATES:
        return True
    return known.state == "skipped" and unchanged_stat(
        known, entry.size, entry.mtime_ns, entry.ctime_ns
    )


def unchanged_stat(known: KnownFile, size: int, mtime_ns: int, ctime_ns: int | None) -> bool:
    if known.size != size or known.mtime_ns != mtime_ns:
        return False
    return known.ctime_ns is None or ctime_ns is None or known.ctime_ns == ctime_ns


@dataclass(slots=True)
class ScanIndex:
    """What the catalog knows of one source: folder digests now, file rows on demand."""

    catalog: Catalog
    source_id: int
    stored: dict[str, str]
    seen: dict[str, str] = field(default_factory=dict)  # folder → digest in this scan
    unsettled: set[str] = field(default_factory=set)  # folders that must not be trusted yet
    gone: dict[str, list[int]] = field(default_factory=dict)  # folder → rows not seen again
    stored_skipped: dict[str, int] = field(default_factory=dict)  # folder → skipped files
    skipped: dict[str, int] = field(default_factory=dict)  # folder → skipped in this scan

    @classmethod
    def load(cls, catalog: Catalog, source_id: int) -> ScanIndex:
        with catalog.session() as db:
            digests = folder_digests(db, source_id)
            return cls(catalog, source_id, digests, stored_skipped=folder_skipped(db, source_id))

    def count_skipped(self, folder: str) -> None:
        self.skipped[folder] = self.skipped.get(folder, 0) + 1

    def is_unchanged(self, group: FolderListing, digest: str) -> bool:
        """Record the folder as seen; True when all of it is as the catalog last settled it."""
        if group.folder in self.seen:
            # Listed in two pieces: compare file by file and trust neither piece's digest.
            self.unsettled.add(group.folder)
            self.gone.pop(group.folder, None)
            return False
        self.seen[group.folder] = digest
        return self.stored.get(group.folder) == digest

    def rows(self, folder: str) -> dict[str, KnownFile]:
        """Every catalogued file of one changed folder (one query)."""
        with self.catalog.session() as db:
            return folder_files(db, self.source_id, folder)

    def not_seen_again(self, folder: str, ids: list[int]) -> None:
        if folder not in self.unsettled and ids:
            self.gone[folder] = ids

    def vanished_folders(self) -> list[str]:
        """Folders with a stored digest that this scan did not list at all."""
        return [path for path in self.stored if path not in self.seen]

    def digests_to_save(self) -> dict[str, str]:
        """New digests of folders that settled in this scan."""
        return {
            folder: digest
            for folder, digest in self.seen.items()
            if folder not in self.unsettled and self.stored.get(folder) != digest
        }
