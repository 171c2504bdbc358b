"""The one contract every source kind passes (as the destinations have theirs).

A kind's test module subclasses `SourceContract` and provides a ``world`` fixture: a `World`
holding the source under test and the means to change what it lists behind its back (the way
a camera, a downloader or another machine would), and to count the content bytes read.

Capabilities are read here, as the code that uses them reads them: ``can_watch`` → ``changes``
reports a new file; ``can_remove`` → ``remove`` deletes it (``--move``); ``local_paths`` → the
entry's path holds the same bytes (exiftool reads it); ``server_checksum`` → entries carry it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import pytest
from sqlalchemy import select

from picpipe.catalog.models import SourceFile
from picpipe.errors import ItemError, TornRead, UnreadableFile, VanishedFile
from picpipe.hashing import new_hasher, sha256_bytes
from picpipe.pipeline.scan import folder_digest
from picpipe.sources.base import FolderListing, ScanProblem, Source, SourceEntry, iter_entries
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo

MTIME = 1_700_000_000_000_000_000


class World(Protocol):
    source: Source

    def put(self, ref: str, data: bytes, mtime_ns: int) -> None: ...

    def delete(self, ref: str) -> None: ...

    def break_file(self, ref: str) -> None:
        """Make ``ref`` unreadable (an I/O error, a permission problem)."""

    def content_read(self) -> int:
        """Bytes of file content read so far."""


def ref_of(world: World, path: str) -> str:
    """The source's ref for the file the contract calls ``path``: the path itself, or what a
    world with its own ids says (``ref_of``: an Immich asset id)."""
    mapping = getattr(world, "ref_of", None)
    return path if mapping is None else str(mapping(path))


def by_path(
    world: World, found: dict[str, SourceEntry], paths: list[str]
) -> dict[str, SourceEntry]:
    """``found`` (by ref) keyed by the contract's paths."""
    refs = {ref_of(world, p): p for p in paths}
    return {refs.get(ref, ref): entry for ref, entry in found.items()}


def listed(source: Source) -> dict[str, SourceEntry]:
    out: dict[str, SourceEntry] = {}
    for item in iter_entries(source):
        assert not isinstance(item, ScanProblem), item
        assert item.ref not in out, f"{item.ref} listed twice"
        out[item.ref] = item
    return out


def read_all(source: Source, entry: SourceEntry) -> bytes:
    with source.open(entry) as stream:
        return stream.read()


def listed_after(world: World) -> dict[str, SourceEntry]:
    populate(world)
    return listed(world.source)


def populate(world: World) -> dict[str, bytes]:
    files = {
        "IMG_0001.JPG": photo(1, 300_000),
        "2024/05/IMG_0002.jpg": photo(2, 300_000),
        "2024/05/IMG_0003.heic": photo(3, 300_000),
        "2024/06/clip": photo(4, 300_000),  # no extension: recognised by content on import
        "2024/06/notes.txt": b"not a photo",
        "2024/06/IMG_0005.JPG.part": photo(5, 1000),  # a download in progress
    }
    for i, (ref, data) in enumerate(files.items()):
        world.put(ref, data, MTIME + i * 1_000_000_000)
    return files


PATHS = [
    "IMG_0001.JPG",
    "2024/05/IMG_0002.jpg",
    "2024/05/IMG_0003.heic",
    "2024/06/clip",
    "2024/06/notes.txt",
    "2024/06/IMG_0005.JPG.part",
]


class SourceContract:
    """Subclass with a ``world`` fixture; see the module docstring."""

    def test_every_file_is_listed_once_without_reading_content(self, world: World) -> None:
        files = populate(world)
        listed(world.source)  # warm up (imports, caches)
        before = world.content_read()
        found = by_path(world, listed(world.source), list(files))
        assert world.content_read() - before < 64 * 1024
        assert set(found) == set(files)
        assert found["2024/06/IMG_0005.JPG.part"].skipped  # accounted for, with a reason
        assert found["2024/06/clip"].sniff
        assert not found["2024/06/clip"].skipped
        for ref, entry in found.items():
            assert entry.name == ref.rpartition("/")[2]
            if not entry.skipped:
                assert entry.size == len(files[ref])

    def test_entries_are_stable_and_grouped_by_folder(self, world: World) -> None:
        populate(world)
        first = listed(world.source)
        second = listed(world.source)
        assert {r: e[:4] for r, e in first.items()} == {r: e[:4] for r, e in second.items()}
        digests = []
        for _ in range(2):
            pieces = [i for i in world.source.listing() if isinstance(i, FolderListing)]
            for piece in pieces:
                assert all(e.ref.rpartition("/")[0] == piece.folder for e in piece.entries)
            digests.append(sorted(folder_digest(p) for p in pieces))
        assert digests[0] == digests[1]

    def test_open_yields_the_exact_bytes(self, world: World) -> None:
        files = populate(world)
        for ref, entry in by_path(world, listed(world.source), list(files)).items():
            if not entry.skipped:
                assert read_all(world.source, entry) == files[ref], ref

    def test_changes_are_reported(self, world: World) -> None:
        paths = [*populate(world), "2024/07/IMG_0009.JPG"]
        before = by_path(world, listed(world.source), paths)
        pieces = {
            p.folder: folder_digest(p)
            for p in world.source.listing()
            if isinstance(p, FolderListing)
        }
        world.put("2024/05/IMG_0002.jpg", photo(20, 310_000), MTIME + 99_000_000_000)
        world.put("2024/07/IMG_0009.JPG", photo(9), MTIME)
        after = by_path(world, listed(world.source), paths)
        changed = after["2024/05/IMG_0002.jpg"]
        assert (changed.size, changed.mtime_ns) != tuple(before["2024/05/IMG_0002.jpg"][2:4])
        assert read_all(world.source, changed) == photo(20, 310_000)
        assert "2024/07/IMG_0009.JPG" in after
        now = {
            p.folder: folder_digest(p)
            for p in world.source.listing()
            if isinstance(p, FolderListing)
        }
        if set(now) == {""}:  # a source without folders (Immich): its one listing changed
            assert now[""] != pieces[""]
        else:
            assert now["2024/05"] != pieces["2024/05"]
            assert now["2024/06"] == pieces["2024/06"]

    def test_a_watchable_source_reports_new_files(self, world: World) -> None:
        if not world.source.caps.can_watch:
            pytest.skip(f"{world.source.kind} cannot watch")
        populate(world)
        stop = threading.Event()
        seen: list[str] = []

        def watch() -> None:
            for batch in world.source.changes(stop):
                seen.extend(e.ref for e in batch)
                if "new/IMG_0100.JPG" in seen:
                    return

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        time.sleep(0.3)
        world.put("new/IMG_0100.JPG", photo(100), MTIME)
        thread.join(timeout=15)
        stop.set()
        assert "new/IMG_0100.JPG" in seen

    def test_a_vanished_file_is_reported_gone(self, world: World) -> None:
        paths = list(populate(world))
        ref = ref_of(world, "IMG_0001.JPG")
        entry = listed(world.source)[ref]
        world.delete("IMG_0001.JPG")
        assert ref not in listed(world.source)
        if getattr(world, "trash_keeps_bytes", False):
            return  # deleted means trashed (Immich): the original stays readable for a while
        with pytest.raises(VanishedFile):
            read_all(world.source, entry)
        del paths

    def test_errors_map_to_the_error_tree(self, world: World) -> None:
        found = by_path(world, listed_after(world), PATHS)
        world.put("2024/05/IMG_0002.jpg", photo(21, 300_001), MTIME + 5)
        with pytest.raises(TornRead) as torn:
            read_all(world.source, found["2024/05/IMG_0002.jpg"])
        assert torn.value.retryable
        world.break_file("IMG_0001.JPG")
        with pytest.raises(ItemError) as broken:
            read_all(world.source, found["IMG_0001.JPG"])
        assert isinstance(broken.value, (UnreadableFile, VanishedFile, TornRead))

    def test_declared_capabilities_hold(self, world: World) -> None:
        files = populate(world)
        caps = world.source.caps
        entries = by_path(world, listed(world.source), list(files))
        for ref, entry in entries.items():
            if caps.local_paths and not entry.skipped:
                assert entry.local_path is not None
                # A remote source's file is there once opened (downloaded), as in an import.
                assert read_all(world.source, entry) == files[ref]
                with open(entry.local_path, "rb") as handle:
                    assert handle.read() == files[ref]
            if caps.server_checksum and not entry.skipped:
                assert entry.checksum is not None
        if caps.server_checksum == "sha256":
            assert all(
                e.checksum == sha256_bytes(files[r]) for r, e in entries.items() if not e.skipped
            )
        if caps.server_checksum == "sha1":
            assert all(e.checksum == _sha1(files[r]) for r, e in entries.items() if not e.skipped)
        if caps.can_remove:
            world.source.remove(entries["IMG_0001.JPG"])
            assert "IMG_0001.JPG" not in listed(world.source)
        else:
            assert not hasattr(world.source, "remove") or not caps.can_remove

    def test_an_import_accounts_for_every_file_and_marks_gone(
        self, world: World, sqlite_library: LibraryFixture
    ) -> None:
        populate(world)
        summary = sqlite_library.run(world.source)
        assert (summary.seen, summary.new, summary.skipped, summary.failed) == (6, 4, 2, 0)
        again = sqlite_library.run(world.source)
        assert (again.new, again.unchanged, again.skipped) == (0, 4, 2)
        world.delete("2024/05/IMG_0003.heic")
        sqlite_library.run(world.source)
        with sqlite_library.catalog.session() as db:
            found = {r.ref: r for r in db.scalars(select(SourceFile))}
        rows = {p: found[ref_of(world, p)] for p in PATHS}
        assert rows["2024/05/IMG_0003.heic"].gone
        assert not rows["2024/05/IMG_0002.jpg"].gone
        assert rows["2024/06/notes.txt"].state == "skipped"


def _sha1(data: bytes) -> str:
    hasher = new_hasher("sha1")
    hasher.update(data)
    return hasher.hexdigest()
