"""Rescans decide "unchanged" per folder digest; only changed folders load file rows."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from picpipe.catalog.models import Source, SourceFile, SourceFolder
from picpipe.pipeline.scan import ScanIndex, folder_digest
from picpipe.samples import make_jpeg
from picpipe.sources.base import FolderListing, SourceEntry
from picpipe.sources.folder import FolderSource
from tests.conftest import LibraryFixture


def entry(ref: str, size: int = 1, mtime: int = 1) -> SourceEntry:
    return SourceEntry(ref, ref.rpartition("/")[2], size, mtime)


def digest(*entries: SourceEntry) -> str:
    return folder_digest(FolderListing("a", list(entries)))


def test_digest_is_stable_and_sees_any_change() -> None:
    base = digest(entry("a/1"), entry("a/2"))
    assert base == digest(entry("a/1"), entry("a/2"))
    assert base != digest(entry("a/1"), entry("a/2", mtime=2))
    assert base != digest(entry("a/1"), entry("a/2", size=2))
    assert base != digest(entry("a/1"))


def test_folder_listings_build_entries_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.jpg").write_bytes(b"abc")
    (listing,) = list(FolderSource("s", tmp_path).listing())
    assert isinstance(listing, FolderListing)
    assert (listing.folder, len(listing), listing.fingerprint[0][:2]) == ("d", 1, ("x.jpg", 3))
    (e,) = listing.entries
    assert (e.ref, e.name, e.size, e.local_path) == (
        "d/x.jpg",
        "x.jpg",
        3,
        str(tmp_path / "d" / "x.jpg"),
    )


def tree(root: Path) -> None:
    for i, folder in enumerate(["2021/01", "2021/02", "2022/01", ""]):
        for j in range(3):
            make_jpeg(
                root / folder / f"IMG_{i}{j}.jpg",
                taken=datetime(2021, 1 + i, 1 + j),
                seed=i * 10 + j,
            )


def source_id(library: LibraryFixture) -> int:
    with library.catalog.session() as db:
        return db.scalars(select(Source.id)).one()


def test_settled_folders_store_digests_and_rescans_trust_them(
    library: LibraryFixture, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    tree(root)
    library.import_folder(root)
    index = ScanIndex.load(library.catalog, source_id(library))
    assert set(index.stored) == {"2021/01", "2021/02", "2022/01", ""}

    again = library.import_folder(root)
    assert (again.unchanged, again.new) == (12, 0)


def test_a_vanished_folder_marks_its_files_gone_and_forgets_the_digest(
    library: LibraryFixture, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    tree(root)
    library.import_folder(root)
    shutil.rmtree(root / "2021" / "02")

    summary = library.import_folder(root)

    assert (summary.seen, summary.unchanged) == (9, 9)
    with library.catalog.session() as db:
        gone = {r.ref for r in db.scalars(select(SourceFile).where(SourceFile.gone.is_(True)))}
        folders = set(db.scalars(select(SourceFolder.path)))
    assert gone == {f"2021/02/IMG_1{j}.jpg" for j in range(3)}
    assert "2021/02" not in folders

    shutil.copytree(
        tmp_path / "photos" / "2021" / "01", root / "2021" / "02"
    )  # other files come back
    back = library.import_folder(root)
    assert back.duplicate == 3


def test_a_retryable_failure_keeps_the_folder_unsettled(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    tree(root)
    sqlite_library.import_folder(root)
    with sqlite_library.catalog.session() as db, db.begin():
        row = db.scalars(select(SourceFile).where(SourceFile.ref == "2021/01/IMG_00.jpg")).one()
        row.state, row.retryable, row.mtime_ns = "failed", True, 0
        db.execute(SourceFolder.__table__.delete().where(SourceFolder.path == "2021/01"))

    summary = sqlite_library.import_folder(root)

    assert (summary.duplicate, summary.unchanged) == (1, 11)
    index = ScanIndex.load(sqlite_library.catalog, source_id(sqlite_library))
    assert "2021/01" in index.stored
