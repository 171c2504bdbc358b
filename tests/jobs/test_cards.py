"""Card sessions end to end: a folder appearing under a watched mount root is a card inserted.

Real library, real catalog (SQLite and PostgreSQL), real exiftool, two filesystem destinations;
the card is built in a staging folder and renamed under the mount root in one step, as an
auto-mount makes it appear.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from picpipe.catalog.models import CardSession, ImportSession, Replica
from picpipe.config import Settings
from picpipe.events import Event, ItemDone
from picpipe.jobs.cards import CardService, run_removable
from picpipe.sources.removable import RemovableOptions
from tests.conftest import LibraryFixture
from tests.destinations.contract import photo
from tests.sources.test_removable import loop_card  # noqa: F401 - a fixture

MEDIA = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "media"
PHOTOS = 4


def card_settings(lib: LibraryFixture, tmp_path: Path, destinations: int = 2) -> Settings:
    dests: dict[str, dict[str, Any]] = {}
    for i in range(1, destinations + 1):
        (tmp_path / f"nas{i}").mkdir()
        dests[f"nas{i}"] = {"kind": "filesystem", "path": str(tmp_path / f"nas{i}"), "fsync": False}
    thumbs = lib.settings.thumbs.model_copy(update={"on_import": False})
    return lib.settings.model_copy(update={"destinations": dests, "thumbs": thumbs})


def camera_card(staging: Path) -> Path:
    """A card as a camera, a GoPro and a Sony leave it, with their bookkeeping files."""
    dcim = staging / "DCIM" / "100CANON"
    dcim.mkdir(parents=True)
    for i in range(PHOTOS):
        (dcim / f"IMG_{i + 1:04d}.JPG").write_bytes(photo(i + 1, 20_000))
    gopro = staging / "DCIM" / "100GOPRO"
    gopro.mkdir()
    shutil.copyfile(MEDIA / "video" / "with-gps.mp4", gopro / "GX010001.MP4")
    (gopro / "GX010001.THM").write_bytes(b"thumbnail of the clip")
    (gopro / "GL010001.LRV").write_bytes(b"low resolution proxy")
    clip = staging / "PRIVATE" / "M4ROOT" / "CLIP"
    clip.mkdir(parents=True)
    shutil.copyfile(MEDIA / "video" / "mp42-hvc1.mp4", clip / "C0001.MP4")
    (clip / "C0001M01.XML").write_text("<NonRealTimeMeta/>")
    stream = staging / "PRIVATE" / "AVCHD" / "BDMV" / "STREAM"
    stream.mkdir(parents=True)
    shutil.copyfile(MEDIA / "video" / "Sony ILCE-7M3 (A7M3).mts", stream / "00000.MTS")
    (staging / "PRIVATE" / "AVCHD" / "BDMV" / "INDEX.BDM").write_bytes(b"INDX0200")
    (staging / "IMG_9999.JPG").write_bytes(photo(99, 20_000))  # media at the root
    return staging


def service(lib: LibraryFixture, settings: Settings, root: Path, **opts: Any) -> CardService:
    options = RemovableOptions(mount_roots=[root], udev=False, poll_seconds=0.05, **opts)
    return CardService(settings, "cards", options, catalog=lib.catalog, tools=lib.tools)


def insert(svc: CardService, staging: Path, root: Path, name: str) -> Path:
    card = root / name
    os.rename(staging, card)
    stop = threading.Event()
    count = len(svc.sessions)
    svc.tick(stop)  # seen once: not taken yet (a folder may still be filling)
    assert len(svc.sessions) == count
    svc.tick(stop)
    assert len(svc.sessions) == count + 1
    return card


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]


def sessions(lib: LibraryFixture) -> list[CardSession]:
    with lib.catalog.session() as db:
        rows = list(db.scalars(select(CardSession).order_by(CardSession.id)))
        db.expunge_all()
    return rows


@pytest.mark.slow
def test_a_card_goes_from_insertion_to_safe_to_format(
    library: LibraryFixture, tmp_path: Path
) -> None:
    settings = card_settings(library, tmp_path)
    root = tmp_path / "media"
    root.mkdir()
    staging = camera_card(tmp_path / "staging" / "EOS_DIGITAL")
    before = {p.relative_to(staging): p.read_bytes() for p in files_under(staging)}
    svc = service(library, settings, root)
    card = insert(svc, staging, root, "EOS_DIGITAL")
    [session] = svc.sessions
    assert session.safety is not None
    assert session.safety.blocking == []
    assert session.safety.disposable == 4  # .THM, .LRV, clip XML, AVCHD index: by rule
    [row] = sessions(library)
    assert (row.state, row.label, row.files, row.blocking) == ("safe", "EOS_DIGITAL", 12, [])
    assert row.ended_at is not None
    media = PHOTOS + 1 + 3  # photos, the root photo, three videos
    for dest in ("nas1", "nas2"):
        assert len([p for p in files_under(tmp_path / dest) if p.suffix != ".xmp"]) == media
    with library.catalog.session() as db:
        assert db.scalar(select(Replica).where(Replica.state != "verified")) is None
    # nothing on the card was written, moved or removed
    assert {p.relative_to(card): p.read_bytes() for p in files_under(card)} == before


@pytest.mark.slow
def test_a_card_pulled_halfway_resumes_with_nothing_copied_twice(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    lib = sqlite_library
    settings = card_settings(lib, tmp_path).model_copy(update={"workers": 1})
    root = tmp_path / "media"
    root.mkdir()
    staging = tmp_path / "staging" / "CARD"
    (staging / "DCIM" / "100NIKON").mkdir(parents=True)
    total = 30
    for i in range(total):
        (staging / "DCIM" / "100NIKON" / f"DSC_{i:04d}.JPG").write_bytes(photo(500 + i, 5_000))
    away = tmp_path / "pulled"
    done: list[str] = []

    def pull_after_ten(event: Event) -> None:
        # The reader loses the card after the tenth file, wherever the import is then.
        if isinstance(event, ItemDone) and event.target is None:
            done.append(event.path)
            if len(done) == 10 and (root / "CARD").exists():
                os.rename(root / "CARD", away)

    svc = service(lib, settings, root)
    svc.sinks = [pull_after_ten]
    insert(svc, staging, root, "CARD")
    [first] = sessions(lib)
    assert first.state == "interrupted"
    assert "pulled" in (first.error or "")
    assert files_under(tmp_path / "nas1") == []  # nothing replicated from a pulled card
    svc.sinks = []
    stop = threading.Event()
    svc.tick(stop)  # notices the card is gone
    insert(svc, away, root, "CARD")
    [again] = sessions(lib)  # the same session, resumed
    assert (again.id, again.state, again.insertions, again.files) == (first.id, "safe", 2, total)
    with lib.catalog.session() as db:
        runs = list(
            db.scalars(
                select(ImportSession)
                .where(ImportSession.kind == "import")
                .order_by(ImportSession.id)
            )
        )
    assert len(runs) == 2
    assert 10 <= runs[0].new < total
    assert runs[1].new == total - runs[0].new  # only what the first insertion did not read
    assert runs[1].unchanged == runs[0].new
    originals = [p for p in files_under(lib.root / "originals") if p.suffix != ".xmp"]
    assert len(originals) == total
    for dest in ("nas1", "nas2"):
        assert len([p for p in files_under(tmp_path / dest) if p.suffix != ".xmp"]) == total


@pytest.mark.slow
def test_a_card_with_an_unreadable_file_never_becomes_safe(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    lib = sqlite_library
    settings = card_settings(lib, tmp_path)
    root = tmp_path / "media"
    root.mkdir()
    staging = tmp_path / "staging" / "BROKEN"
    folder = staging / "DCIM" / "100CANON"
    folder.mkdir(parents=True)
    (folder / "IMG_0001.JPG").write_bytes(photo(1, 20_000))
    # A damaged directory entry: a name whose content is nowhere (FAT has no symlinks; a
    # dangling one is the plain-folder stand-in for a cluster chain that leads nowhere).
    os.symlink(folder / "IMG_0002.JPG.lost", folder / "IMG_0002.JPG")
    # What a camera that lost power mid-write leaves: the entry, with no bytes behind it.
    (folder / "IMG_0003.JPG").write_bytes(b"")
    svc = service(lib, settings, root)
    insert(svc, staging, root, "BROKEN")
    for _ in range(2):  # inserted again: still not safe
        [row] = sessions(lib)[-1:]
        assert row.state == "not_safe"
        blocking = {b["path"]: b["reason"] for b in row.blocking or []}
        assert set(blocking) == {"DCIM/100CANON/IMG_0002.JPG", "DCIM/100CANON/IMG_0003.JPG"}
        assert "IMG_0001.JPG" not in " ".join(blocking)
        assert blocking["DCIM/100CANON/IMG_0002.JPG"] == "cannot be read: broken symbolic link"
        assert blocking["DCIM/100CANON/IMG_0003.JPG"].startswith("read error: ")
        assert "file is empty" in blocking["DCIM/100CANON/IMG_0003.JPG"]
        os.rename(root / "BROKEN", staging)
        svc.tick(threading.Event())
        insert(svc, staging, root, "BROKEN")


def test_without_enough_verified_copies_a_card_is_not_safe(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    lib = sqlite_library
    settings = card_settings(lib, tmp_path, destinations=0)
    root = tmp_path / "media"
    root.mkdir()
    staging = tmp_path / "staging" / "CARD"
    (staging / "DCIM" / "100CANON").mkdir(parents=True)
    (staging / "DCIM" / "100CANON" / "IMG_0001.JPG").write_bytes(photo(7, 20_000))
    (staging / "DCIM" / "100CANON" / "IMG_0001.JPG.part").write_bytes(b"half a copy")
    svc = service(lib, settings, root, safe_replicas=2)
    insert(svc, staging, root, "CARD")
    [row] = sessions(lib)
    assert row.state == "not_safe"
    reasons = {b["path"]: b["reason"] for b in row.blocking or []}
    assert reasons["DCIM/100CANON/IMG_0001.JPG"] == (
        "1 verified copies of 2 needed (library counted)"
    )
    assert reasons["DCIM/100CANON/IMG_0001.JPG.part"].startswith("skipped: temporary name")


def test_run_removable_serves_until_stopped(sqlite_library: LibraryFixture, tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    settings = card_settings(sqlite_library, tmp_path, destinations=0)
    stop = threading.Event()
    options = {"kind": "removable", "mount_roots": [str(root)], "udev": False, "poll_seconds": 0.05}
    thread = threading.Thread(target=run_removable, args=(settings, "cards", options, stop))
    thread.start()
    staging = tmp_path / "staging" / "EMPTY"
    (staging / "DCIM").mkdir(parents=True)
    os.rename(staging, root / "EMPTY")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [s for s in sessions(sqlite_library) if s.ended_at]:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    [row] = sessions(sqlite_library)
    assert (row.state, row.files) == ("safe", 0)  # an empty card holds nothing to lose


@pytest.mark.slow
def test_a_loop_mounted_card_ends_safe_to_format(
    sqlite_library: LibraryFixture,
    tmp_path: Path,
    loop_card: Path,  # noqa: F811 - the fixture imported above
) -> None:
    settings = card_settings(sqlite_library, tmp_path)
    svc = service(sqlite_library, settings, loop_card.parent)
    stop = threading.Event()
    svc.tick(stop)
    svc.tick(stop)
    [row] = sessions(sqlite_library)
    assert (row.label, row.state, row.files) == ("EOS_DIGITAL", "safe", 1)
    assert not row.uuid.startswith("folder-")
    assert row.reader not in (None, "folder")
    for dest in ("nas1", "nas2"):
        assert len([p for p in files_under(tmp_path / dest) if p.suffix != ".xmp"]) == 1


def test_a_session_stopped_midway_ends_interrupted_and_resumes(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    settings = card_settings(sqlite_library, tmp_path, destinations=0)
    root = tmp_path / "media"
    root.mkdir()
    staging = tmp_path / "staging" / "CARD"
    (staging / "DCIM" / "100CANON").mkdir(parents=True)
    (staging / "DCIM" / "100CANON" / "IMG_0001.JPG").write_bytes(photo(8, 20_000))
    svc = service(sqlite_library, settings, root, safe_replicas=1)
    stop = threading.Event()
    os.rename(staging, root / "CARD")
    svc.tick(stop)
    svc.sinks = [lambda event: stop.set()]  # picpipe asked to stop while the card is read
    svc.tick(stop)
    [row] = sessions(sqlite_library)
    assert (row.state, row.error) == ("interrupted", "picpipe was stopped while it was being read")
    fresh = service(sqlite_library, settings, root, safe_replicas=1)  # picpipe started again
    go = threading.Event()
    fresh.tick(go)
    fresh.tick(go)
    [row] = sessions(sqlite_library)
    assert (row.state, row.insertions, row.files) == ("safe", 2, 1)
