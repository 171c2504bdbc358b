"""Importing folders: one deduplicated, date-organised library; rescans read nothing new."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from picpipe.catalog.models import Asset, ImportSession, SessionFailure, Source, SourceFile
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture, tree_digest


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def phone_dump(folder: Path, count: int = 6) -> list[Path]:
    paths = []
    for i in range(count):
        photo = make_jpeg(
            folder / f"DCIM/IMG_{i:04d}.JPG",
            taken=datetime(2023, 4, 5 + i, 12, 34, 56),
            offset="+02:00" if i % 2 else None,
            make="Apple",
            model="iPhone 13",
            gps=(52.5, 13.4) if i == 0 else None,
            seed=i,
        )
        paths.append(photo.path)
    return paths


def library_files(root: Path) -> list[str]:
    """Originals under the library root (their XMP sidecars aside)."""
    originals = (root / "originals").rglob("*")
    return sorted(str(p.relative_to(root)) for p in originals if p.is_file() and p.suffix != ".xmp")


def test_import_places_each_photo_by_local_date_and_hash(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "phone"
    paths = phone_dump(source)
    before = tree_digest(source)

    summary = library.import_folder(source)

    assert (summary.seen, summary.new, summary.duplicate, summary.failed) == (6, 6, 0, 0)
    assert summary.bytes == sum(p.stat().st_size for p in paths)
    expected = sorted(f"originals/2023/04/{5 + i:02d}/{sha(p)}.jpg" for i, p in enumerate(paths))
    assert library_files(library.root) == expected
    assert tree_digest(source) == before, "sources are never modified"
    with library.catalog.session() as db:
        first = db.get_one(Asset, sha(paths[0]))
        # No offset tag, but GPS in Berlin: the zone's offset in April (summer time).
        assert (first.taken_local, first.taken_offset_min, first.date_source) == (
            datetime(2023, 4, 5, 12, 34, 56),
            120,
            "exif",
        )
        assert (first.offset_source, first.country) == ("gps-zone", "Germany")
        assert (first.make, first.model, first.kind, first.mime_type) == (
            "Apple",
            "iPhone 13",
            "photo",
            "image/jpeg",
        )
        assert (round(first.gps_lat or 0, 4), round(first.gps_lon or 0, 4)) == (52.5, 13.4)
        assert (first.width, first.height, first.original_name) == (640, 480, "IMG_0000.JPG")
        second = db.get_one(Asset, sha(paths[1]))
        assert second.taken_offset_min == 120
        assert second.taken_utc == datetime(2023, 4, 6, 10, 34, 56)
        run = db.get_one(ImportSession, summary.session_id)
        assert (run.status, run.new, run.seen) == ("completed", 6, 6)
        assert run.ended_at is not None


def test_second_import_adds_nothing_and_reads_nothing(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "phone"
    phone_dump(source)
    library.import_folder(source)
    files = library_files(library.root)

    again = library.import_folder(source)

    assert (again.seen, again.new, again.duplicate, again.unchanged, again.failed, again.bytes) == (
        6,
        0,
        0,
        6,
        0,
        0,
    )
    assert library_files(library.root) == files


def test_a_copy_in_another_folder_adds_only_provenance(
    library: LibraryFixture, tmp_path: Path
) -> None:
    phone = tmp_path / "phone"
    paths = phone_dump(phone)
    backup = tmp_path / "old-backup"
    shutil.copytree(phone, backup / "nested")
    library.import_folder(phone)
    files = library_files(library.root)

    summary = library.import_folder(backup)

    assert (summary.new, summary.duplicate, summary.bytes) == (0, 6, 0)
    assert library_files(library.root) == files
    with library.catalog.session() as db:
        rows = db.execute(
            select(Source.name, SourceFile.ref, SourceFile.state)
            .join(Source)
            .where(SourceFile.sha256 == sha(paths[0]))
        ).all()
    assert sorted(rows) == [
        (str(backup), "nested/DCIM/IMG_0000.JPG", "duplicate"),
        (str(phone), "DCIM/IMG_0000.JPG", "imported"),
    ]


def test_identical_files_in_one_run_are_stored_once(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "dump"
    original = make_jpeg(source / "a.jpg", taken=datetime(2020, 1, 2, 3, 4, 5)).path
    for i in range(5):
        shutil.copy(original, source / f"copy{i}.jpg")

    summary = library.import_folder(source)

    assert (summary.new, summary.duplicate) == (1, 5)
    assert library_files(library.root) == [f"originals/2020/01/02/{sha(original)}.jpg"]


def test_extension_follows_the_real_type(library: LibraryFixture, tmp_path: Path) -> None:
    source = tmp_path / "odd"
    photo = make_jpeg(source / "really a jpeg.PNG", taken=datetime(2019, 5, 6, 7, 8, 9)).path

    library.import_folder(source)

    assert library_files(library.root) == [f"originals/2019/05/06/{sha(photo)}.jpg"]
    with library.catalog.session() as db:
        asset = db.get_one(Asset, sha(photo))
        assert (asset.original_name, asset.file_type) == ("really a jpeg.PNG", "JPEG")


def test_litter_hidden_folders_and_partial_downloads_are_skipped(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "nas"
    make_jpeg(source / "keep.jpg", taken=datetime(2021, 1, 1, 1, 1, 1))
    litter = {
        "@eaDir/keep.jpg/SYNOPHOTO_THUMB_XL.jpg": b"\xff\xd8x",
        "#recycle/old.jpg": b"\xff\xd8y",
        ".hidden/secret.jpg": b"\xff\xd8z",
        "._keep.jpg": b"\x00\x05",
        ".DS_Store": b"\x00",
        "Thumbs.db": b"\x00",
        "download.jpg.part": b"\xff\xd8",
        "copying.tmp": b"\xff",
        ".~lock.jpg": b"\xff",
        "notes.txt": b"hello",
    }
    for rel, data in litter.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)

    summary = library.import_folder(source)

    # Each one is accounted for as skipped (the folders as one entry each, not walked).
    assert (summary.seen, summary.new, summary.failed, summary.skipped) == (11, 1, 0, 10)


def test_changed_and_removed_files_are_noticed(library: LibraryFixture, tmp_path: Path) -> None:
    source = tmp_path / "phone"
    paths = phone_dump(source, count=3)
    library.import_folder(source)
    make_jpeg(paths[0], taken=datetime(2023, 4, 5, 12, 34, 56), seed=99)  # edited in place
    paths[1].unlink()

    summary = library.import_folder(source)

    assert (summary.seen, summary.new, summary.unchanged) == (2, 1, 1)
    with library.catalog.session() as db:
        rows = {r.ref: (r.sha256, r.gone) for r in db.scalars(select(SourceFile))}
    assert rows["DCIM/IMG_0000.JPG"] == (sha(paths[0]), False)
    assert rows["DCIM/IMG_0001.JPG"][1] is True
    # the earlier content of the edited file stays in the library: nothing is ever lost
    assert len(library_files(library.root)) == 4


def test_move_deletes_sources_only_after_the_copy_is_stored(
    library: LibraryFixture, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    paths = phone_dump(inbox, count=3)
    hashes = {sha(p) for p in paths}
    (inbox / "empty.jpg").write_bytes(b"")

    summary = library.import_folder(inbox, move=True)

    assert (summary.new, summary.failed) == (3, 1)
    assert not any(p.exists() for p in paths)
    assert (inbox / "empty.jpg").exists(), "a failed file is never deleted"
    assert {Path(f).stem for f in library_files(library.root)} == hashes


def test_failures_are_recorded_with_reasons(library: LibraryFixture, tmp_path: Path) -> None:
    source = tmp_path / "s"
    make_jpeg(source / "fine.jpg", taken=datetime(2021, 1, 1))
    (source / "empty.jpg").write_bytes(b"")

    summary = library.import_folder(source)

    assert summary.status == "completed_with_failures"
    assert summary.failures == [
        {"path": f"{source}:empty.jpg", "reason": "file is empty (0 bytes); nothing to import"}
    ]
    with library.catalog.session() as db:
        failure = db.scalars(select(SessionFailure)).one()
        assert (failure.session_id, failure.path) == (summary.session_id, f"{source}:empty.jpg")
        row = db.scalars(select(SourceFile).where(SourceFile.ref == "empty.jpg")).one()
        assert (row.state, row.retryable, row.sha256) == ("failed", False, None)
    # a failed file is tried again and stays in every run's failures until it imports
    again = library.import_folder(source)
    assert (again.status, again.failed, again.unchanged) == ("completed_with_failures", 1, 1)
    assert again.failures == summary.failures
    stat = (source / "empty.jpg").stat()
    shutil.copyfile(source / "fine.jpg", source / "empty.jpg")
    os.utime(source / "empty.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime
    fixed = library.import_folder(source)
    assert (fixed.status, fixed.failed, fixed.duplicate, fixed.unchanged) == ("completed", 0, 1, 1)


def test_symlinked_files_are_imported_and_loops_skipped(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "links"
    real = make_jpeg(tmp_path / "elsewhere" / "real.jpg", taken=datetime(2022, 2, 2)).path
    source.mkdir()
    os.symlink(real, source / "link.jpg")
    os.symlink(source, source / "loop")
    os.symlink(source / "self.jpg", source / "self.jpg")

    summary = sqlite_library.import_folder(source)

    assert summary.new == 1
    # a loop is a skip with its reason, not a failure that marks every later run
    assert (summary.status, summary.failed, summary.skipped) == ("completed", 0, 2)
    again = sqlite_library.import_folder(source)
    assert (again.status, again.failed) == ("completed", 0)


def test_a_lost_original_is_restored_from_any_source_copy(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "phone"
    paths = phone_dump(source, count=2)
    library.import_folder(source)
    lost = next(p for p in (library.root / "originals").rglob("*.jpg") if p.stem == sha(paths[0]))
    lost.unlink()
    shutil.copytree(source, tmp_path / "backup")

    summary = library.import_folder(tmp_path / "backup")

    assert (summary.new, summary.duplicate, summary.bytes) == (0, 2, paths[0].stat().st_size)
    assert lost.read_bytes() == paths[0].read_bytes()
    assert any("restored" in w["problem"] for w in summary.warnings)
