"""Watched folders: files are ingested once settled, exactly once, complete."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from picpipe.errors import ConfigError
from picpipe.hashing import sha256_file
from picpipe.jobs.watch import watched_source
from picpipe.samples import make_jpeg
from picpipe.sources.watched import SETTLING, WatchedOptions, WatchedSource, is_watch_limit
from tests.conftest import LibraryFixture
from tests.sources.watching import (
    library_files,
    names,
    source_files,
    wait_for,
    watching,
)

SETTLE = 0.5
OLD = 1_600_000_000_000_000_000


def options(inbox: Path, **extra: object) -> dict[str, object]:
    return {"kind": "watched", "path": str(inbox), "settle_seconds": SETTLE, **extra}


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def test_a_file_written_slowly_is_imported_once_complete(
    sqlite_library: LibraryFixture, inbox: Path, tmp_path: Path
) -> None:
    photo = make_jpeg(tmp_path / "photo.jpg", taken=datetime(2024, 5, 1, 12, 0, 0)).path
    data = photo.read_bytes()
    with watching(sqlite_library, "inbox", options(inbox)):
        target = inbox / "IMG_0001.JPG"
        chunk = len(data) // 8 + 1
        with open(target, "wb") as out:
            for i in range(0, len(data), chunk):  # 8 chunks over ~2.4 s, each gap < settle
                out.write(data[i : i + chunk])
                out.flush()
                time.sleep(0.3)
        wait_for(lambda: names(sqlite_library) == ["IMG_0001.JPG"])
        time.sleep(SETTLE * 3)  # no second import follows
    assert names(sqlite_library) == ["IMG_0001.JPG"]
    [placed] = library_files(sqlite_library)
    assert sha256_file(placed)[0] == sha256_file(photo)[0]


def test_a_part_file_renamed_then_touched_is_imported_once(
    sqlite_library: LibraryFixture, inbox: Path, tmp_path: Path
) -> None:
    photo = make_jpeg(tmp_path / "p.jpg", taken=datetime(2024, 5, 2, 9, 0, 0), seed=4).path
    with watching(sqlite_library, "inbox", options(inbox)):
        part = inbox / "2024" / "05" / "ABCDEFGH.part"
        part.parent.mkdir(parents=True)
        part.write_bytes(photo.read_bytes())
        time.sleep(0.2)
        final = part.with_name("IMG_0002.JPG")
        os.rename(part, final)
        time.sleep(0.2)
        os.utime(final, ns=(OLD, OLD))  # icloudpd sets the capture time after the rename
        wait_for(lambda: names(sqlite_library) == ["IMG_0002.JPG"])
        time.sleep(SETTLE * 3)
    assert names(sqlite_library) == ["IMG_0002.JPG"]
    rows = source_files(sqlite_library)
    assert rows["2024/05/IMG_0002.JPG"].mtime_ns == OLD
    assert "2024/05/ABCDEFGH.part" not in rows or rows["2024/05/ABCDEFGH.part"].state != "imported"


def test_forced_polling_picks_up_new_files_and_deletions_are_marked_gone(
    sqlite_library: LibraryFixture, inbox: Path, tmp_path: Path
) -> None:
    opts = options(inbox, poll="poll", poll_seconds=0.3)
    source = watched_source(sqlite_library.settings, "inbox", opts)
    assert source.polling_reason() == "poll: poll in the config"
    with watching(sqlite_library, "inbox", opts):
        make_jpeg(inbox / "a.jpg", taken=datetime(2024, 6, 1, 8, 0, 0), seed=1)
        make_jpeg(inbox / "b.jpg", taken=datetime(2024, 6, 1, 8, 0, 1), seed=2)
        wait_for(lambda: names(sqlite_library) == ["a.jpg", "b.jpg"])
        placed = {p: p.read_bytes() for p in library_files(sqlite_library)}
        (inbox / "a.jpg").unlink()
        wait_for(lambda: source_files(sqlite_library)["a.jpg"].gone)
    assert not source_files(sqlite_library)["b.jpg"].gone
    assert {p: p.read_bytes() for p in library_files(sqlite_library)} == placed  # untouched


def test_files_added_while_stopped_are_reconciled_at_start(
    sqlite_library: LibraryFixture, inbox: Path
) -> None:
    with watching(sqlite_library, "inbox", options(inbox)):
        make_jpeg(inbox / "first.jpg", taken=datetime(2024, 7, 1, 8, 0, 0), seed=1)
        wait_for(lambda: names(sqlite_library) == ["first.jpg"])
    make_jpeg(inbox / "while-stopped.jpg", taken=datetime(2024, 7, 2, 8, 0, 0), seed=2)
    time.sleep(SETTLE + 0.1)
    with watching(sqlite_library, "inbox", options(inbox)):
        wait_for(lambda: names(sqlite_library) == ["first.jpg", "while-stopped.jpg"])


def test_temp_names_are_never_ingested(sqlite_library: LibraryFixture, inbox: Path) -> None:
    with watching(sqlite_library, "inbox", options(inbox)):
        for name in ("x.jpg.part", ".hidden.jpg", "~lock.jpg", "y.jpg.tmp", "._z.jpg"):
            make_jpeg(inbox / name, seed=len(name))
        (inbox / "@eaDir").mkdir()
        make_jpeg(inbox / "@eaDir" / "thumb.jpg", seed=9)
        make_jpeg(inbox / "real.jpg", seed=10)
        wait_for(lambda: names(sqlite_library) == ["real.jpg"])
        time.sleep(SETTLE * 2)
    assert names(sqlite_library) == ["real.jpg"]


def test_a_file_that_keeps_changing_is_listed_as_settling(inbox: Path) -> None:
    source = WatchedSource("inbox", inbox, options=WatchedOptions(path=inbox, settle_seconds=30))
    (inbox / "busy.jpg").write_bytes(b"\xff\xd8 partial")
    [entry] = [e for item in source.listing() for e in getattr(item, "entries", [])]
    assert entry.skipped == SETTLING


def test_a_deleted_or_unreadable_folder_is_reported_and_the_watch_goes_on(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    good = tmp_path / "good"
    good.mkdir()
    with (
        watching(sqlite_library, "gone", options(gone)),
        watching(sqlite_library, "good", options(good)),
    ):
        time.sleep(0.5)
        gone.rmdir()
        make_jpeg(good / "ok.jpg", seed=3)
        wait_for(lambda: names(sqlite_library) == ["ok.jpg"])


def test_a_kind_that_is_not_watched_is_refused(sqlite_library: LibraryFixture) -> None:
    with pytest.raises(ConfigError):
        watched_source(sqlite_library.settings, "x", {"kind": "folder", "path": "/tmp"})


def test_running_out_of_inotify_watches_is_recognised() -> None:
    assert is_watch_limit(OSError(28, "No space left on device"))
    assert is_watch_limit(OSError("OS file watch limit reached"))
    assert not is_watch_limit(OSError(2, "No such file or directory"))


def test_a_still_and_its_video_arriving_together_come_in_one_batch(inbox: Path) -> None:
    options = WatchedOptions(path=inbox, settle_seconds=SETTLE, pair_seconds=3)
    source = WatchedSource("inbox", inbox, options=options)
    stop = threading.Event()
    batches: list[list[str]] = []

    def follow() -> None:
        for batch in source.changes(stop):
            batches.append(sorted(e.ref for e in batch))
            return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(0.5)
    (inbox / "IMG_0001.HEIC").write_bytes(b"still")
    time.sleep(SETTLE * 0.8)  # the video lands while the still settles
    (inbox / "IMG_0001_HEVC.MOV").write_bytes(b"motion")
    thread.join(timeout=15)
    stop.set()
    assert batches == [["IMG_0001.HEIC", "IMG_0001_HEVC.MOV"]]
    assert source.state.as_dict()["mode"] == "events"
