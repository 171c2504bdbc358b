"""Every file under a source is accounted for: imported, duplicate, unchanged, failed or skipped
with a reason; files without a media extension are recognised by their first bytes, once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select

from picpipe.catalog.models import Asset, ImportSession, Source, SourceFile, SourceFolder
from picpipe.samples import make_jpeg
from picpipe.sources.base import SourceEntry
from picpipe.sources.folder import FolderSource
from tests.conftest import LibraryFixture, run_cli

EXPECTED_SKIPS = {
    "@eaDir": "ignored by rule (@eaDir)",
    "#recycle": "ignored by rule (#recycle)",
    ".hidden": "hidden folder (not scanned)",
    "._keep.jpg": "ignored by rule (._*)",
    ".DS_Store": "ignored by rule (.DS_Store)",
    "download.jpg.part": "temporary name (*.part)",
    "copying.tmp": "temporary name (*.tmp)",
    ".bashrc": "hidden file",
    "keep.jpg.xmp": "sidecar or proxy file (.xmp)",
    "GX010001.LRV": "sidecar or proxy file (.lrv)",
    "notes.txt": "not a photo or video (no media extension, content not recognised)",
    "archive.bin": "not a photo or video (no media extension, content not recognised)",
    "empty": "empty file without a media extension",
}


class CountingSource(FolderSource):
    """A folder source that counts how often each file is opened (reads of content)."""

    def __init__(self, name: str, root: Path, lib: LibraryFixture) -> None:
        super().__init__(name, root, lib.settings.scan)
        self.opened: list[str] = []

    @contextmanager
    def open(self, entry: SourceEntry) -> Iterator[BinaryIO]:
        self.opened.append(entry.ref)
        with super().open(entry) as stream:
            yield stream


def nas_tree(root: Path) -> None:
    make_jpeg(root / "keep.jpg", taken=datetime(2021, 1, 1, 1, 1, 1), seed=1)
    make_jpeg(root / "IMG_0002", taken=datetime(2021, 1, 2, 1, 1, 1), seed=2)  # no extension
    make_jpeg(root / "photo.dat", taken=datetime(2021, 1, 3, 1, 1, 1), seed=3)
    files = {
        "@eaDir/keep.jpg/SYNOPHOTO_THUMB_XL.jpg": b"\xff\xd8x",
        "#recycle/old.jpg": b"\xff\xd8y",
        ".hidden/secret.jpg": b"\xff\xd8z",
        "._keep.jpg": b"\x00\x05",
        ".DS_Store": b"\x00",
        "download.jpg.part": b"\xff\xd8",
        "copying.tmp": b"\xff",
        ".bashrc": b"alias",
        "keep.jpg.xmp": b"<x:xmpmeta/>",
        "GX010001.LRV": b"\x00\x00\x00\x18ftypmp41",
        "notes.txt": b"hello",
        "archive.bin": b"PK\x03\x04" + bytes(100),
        "empty": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_every_file_is_counted_and_unknown_names_are_sniffed(
    library: LibraryFixture, tmp_path: Path
) -> None:
    nas_tree(tmp_path / "nas")
    source = CountingSource("nas", tmp_path / "nas", library)
    summary = library.run(source)

    assert (summary.seen, summary.new, summary.skipped, summary.failed) == (16, 3, 13, 0)
    assert summary.as_dict()["skipped"] == summary.report().counts["skipped"] == 13
    # Content was read only for files whose name said nothing (and the imported ones).
    sniffed = set(source.opened) - {"keep.jpg", "IMG_0002", "photo.dat"}
    assert sniffed == {"notes.txt", "archive.bin"}
    with library.catalog.session() as db:
        rows = {
            r.ref: (r.state, r.error, r.sha256)
            for r in db.scalars(select(SourceFile).where(SourceFile.state == "skipped"))
        }
        assert {ref: error for ref, (_s, error, _h) in rows.items()} == EXPECTED_SKIPS
        assert all(sha is None for _s, _e, sha in rows.values())
        assets = {a.original_name: a for a in db.scalars(select(Asset))}
        assert set(assets) == {"keep.jpg", "IMG_0002", "photo.dat"}
        # The real type names the library file, whatever the source name said.
        assert assets["IMG_0002"].library_path.endswith(".jpg")
        assert assets["photo.dat"].file_type == "JPEG"
        session = db.get_one(ImportSession, summary.session_id)
        assert (session.skipped, session.seen) == (13, 16)
        folder = db.scalars(select(SourceFolder).where(SourceFolder.path == "")).one()
        assert (folder.files, folder.skipped) == (16, 13)


def test_an_unchanged_rescan_reads_nothing_and_counts_the_same(
    library: LibraryFixture, tmp_path: Path
) -> None:
    nas_tree(tmp_path / "nas")
    library.run(CountingSource("nas", tmp_path / "nas", library))

    again = CountingSource("nas", tmp_path / "nas", library)
    summary = library.run(again)
    assert (summary.seen, summary.new, summary.unchanged, summary.skipped) == (16, 0, 3, 13)
    assert again.opened == []

    # A new file in the folder: the folder is compared file by file, and only the new file
    # is read; the files found not to be media before are not sniffed again.
    (tmp_path / "nas" / "readme").write_text("still not a photo", encoding="utf-8")
    third = CountingSource("nas", tmp_path / "nas", library)
    summary = library.run(third)
    assert third.opened == ["readme"]
    assert (summary.seen, summary.unchanged, summary.skipped) == (17, 3, 14)


def test_a_skipped_file_that_becomes_media_is_imported(
    library: LibraryFixture, tmp_path: Path
) -> None:
    nas_tree(tmp_path / "nas")
    library.import_folder(tmp_path / "nas")
    notes = tmp_path / "nas" / "notes.txt"
    make_jpeg(notes, taken=datetime(2022, 2, 2, 2, 2, 2), seed=9)  # same name, now a photo
    os.utime(notes, ns=(1, 1_000_000_000))

    summary = library.import_folder(tmp_path / "nas")
    assert (summary.new, summary.skipped, summary.unchanged) == (1, 12, 3)
    with library.catalog.session() as db:
        row = db.scalars(select(SourceFile).where(SourceFile.ref == "notes.txt")).one()
        assert (row.state, row.error) == ("imported", None)


def test_a_deleted_skipped_file_is_gone_and_not_counted(
    library: LibraryFixture, tmp_path: Path
) -> None:
    nas_tree(tmp_path / "nas")
    library.import_folder(tmp_path / "nas")
    (tmp_path / "nas" / "notes.txt").unlink()
    summary = library.import_folder(tmp_path / "nas")
    assert (summary.seen, summary.skipped) == (15, 12)
    with library.catalog.session() as db:
        row = db.scalars(select(SourceFile).where(SourceFile.ref == "notes.txt")).one()
        assert (row.state, row.gone) == ("skipped", True)


def test_sessions_lists_skipped_files_with_reasons(
    tmp_path: Path, exiftool_available: None
) -> None:
    nas_tree(tmp_path / "nas")
    home = ["--home", str(tmp_path / "home"), "--library", str(tmp_path / "library")]
    env = {"PICPIPE_IMPORT__FSYNC": "false"}
    imported = run_cli(*home, "import", str(tmp_path / "nas"), "--json", env=env)
    summary = json.loads(imported.stdout)
    assert (summary["skipped"], summary["counts"]["skipped"], summary["new"]) == (13, 13, 3)

    shown = run_cli(*home, "sessions", str(summary["session_id"]), "--skipped", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    (row,) = json.loads(shown.stdout)
    assert row["skipped"] == 13
    name = str(tmp_path / "nas")
    assert {s["path"]: s["reason"] for s in row["skipped_files"]} == {
        f"{name}:{ref}": reason for ref, reason in EXPECTED_SKIPS.items()
    }
    table = run_cli(*home, "sessions", "--skipped", env=env)
    assert "temporary name (*.part)" in table.stdout
    assert run_cli(*home, "sessions", "999", env=env).returncode != 0


def test_dashboard_session_rows_count_skipped(library: LibraryFixture, tmp_path: Path) -> None:
    from picpipe.catalog.status import recent_sessions

    nas_tree(tmp_path / "nas")
    library.import_folder(tmp_path / "nas")
    with library.catalog.session() as db:
        (row,) = [r for r in recent_sessions(db) if r["kind"] == "import"]
        assert db.scalars(select(Source.name)).one() == str(tmp_path / "nas")
    assert (row["skipped"], row["done"], row["seen"]) == (13, 16, 16)


def test_api_sessions_and_sources_count_skipped(library: LibraryFixture, tmp_path: Path) -> None:
    from picpipe.catalog.queries import source_summaries
    from picpipe.web.app import create_app
    from tests.web.conftest import TestClient

    nas_tree(tmp_path / "nas")
    library.import_folder(tmp_path / "nas")
    with library.catalog.session() as db:
        (source,) = source_summaries(db)
    assert (source["files"], source["imported"], source["skipped"]) == (16, 3, 13)
    with TestClient(create_app(library.settings)) as client:
        sessions = client.get("/api/sessions").json()["sessions"]
    assert [s["skipped"] for s in sessions if s["kind"] == "import"] == [13]
