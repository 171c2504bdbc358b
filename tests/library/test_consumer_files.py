"""Files other tools keep in the library tree: ignored by verify with a note, never imported."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from picpipe.config import load_settings
from picpipe.library.verify import verify_library
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture


def drop_consumer_files(folder: Path) -> None:
    for rel, data in (
        ("@eaDir/IMG_1.JPG/SYNOFILE_THUMB_M.jpg", b"\xff\xd8thumb"),
        (".thumbnails/normal/0123.png", b"\x89PNG"),
        ("digikam4.db", b"SQLite format 3\x00"),
        ("thumbnails-digikam.db", b"SQLite format 3\x00"),
    ):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def test_verify_notes_other_tools_files_and_stays_clean(
    library: LibraryFixture, tmp_path: Path
) -> None:
    photo = make_jpeg(tmp_path / "card" / "IMG_1.JPG", taken=datetime(2023, 5, 1, 8, 0, 0)).path
    library.import_folder(tmp_path / "card")
    day = next((library.root / "originals").rglob("*.jpg")).parent
    drop_consumer_files(day)
    drop_consumer_files(library.root)
    (day / "stray.jpg").write_bytes(b"not ours")

    report = verify_library(library.catalog, library.root)

    assert report.untracked == [f"{day.relative_to(library.root).as_posix()}/stray.jpg"]
    notes = {n["path"]: n["note"] for n in report.notes}
    rel = day.relative_to(library.root).as_posix()
    assert set(notes) == {
        f"{rel}/@eaDir",
        f"{rel}/.thumbnails",
        f"{rel}/digikam4.db",
        f"{rel}/thumbnails-digikam.db",
        "@eaDir",
        ".thumbnails",
        "digikam4.db",
        "thumbnails-digikam.db",
    }
    assert notes["digikam4.db"] == "digiKam's database: ignored, never imported"
    assert report.ok == 1
    assert hashlib.sha256(photo.read_bytes()).hexdigest() in {
        p.stem for p in (library.root / "originals").rglob("*.jpg")
    }


def test_other_tools_files_are_never_imported(library: LibraryFixture, tmp_path: Path) -> None:
    """Even with hidden files allowed, thumbnail caches and databases stay out."""
    folder = tmp_path / "nas"
    make_jpeg(folder / "IMG_1.JPG", taken=datetime(2023, 5, 1, 8, 0, 0))
    drop_consumer_files(folder)
    settings = load_settings(
        home=library.settings.home_root,
        library=library.root,
        database_url=library.settings.catalog_url,
        **{"import": {"fsync": False}, "scan": {"skip_hidden": False}},
    )
    lib = LibraryFixture(settings, library.catalog, library.tools)

    summary = lib.import_folder(folder)

    assert (summary.new, summary.failed) == (1, 0)
    assert len(list((library.root / "originals").rglob("*.jpg"))) == 1
