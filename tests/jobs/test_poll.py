"""Polled sources (`jobs/poll.py`): one ingest every poll_seconds until stopped; new files
show in /files after the next poll, removed ones are marked gone (their assets stay)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset, SourceFile
from picpipe.config import Settings, load_settings
from picpipe.jobs.poll import POLLED_KINDS, pollable, run_polled
from picpipe.jobs.watch import live_runner, run_live_sources
from picpipe.jobs.workflows import thumbnails_run
from picpipe.samples import make_jpeg
from tests.web.test_media import app_for, get


def poll_settings(root: Path, **entry: object) -> Settings:
    return load_settings(
        home=root / "home",
        library=root / "library",
        sources={"kitchen": {"path": str(root / "kitchen"), "poll_seconds": 1, **entry}},
        # No thumbnail process pool forked from the poller's thread: this is about polling.
        thumbs={"on_import": False},
        **{"import": {"fsync": False}},
    )


def photo(folder: Path, i: int) -> Path:
    path = folder / f"k{i}.jpg"
    make_jpeg(path, size=(160, 120), taken=datetime(2020, 5, 1 + i), seed=i)
    return path


def eventually(check: Callable[[], bool], seconds: float) -> float:
    """Seconds until ``check()`` held; fails after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"not within {seconds} s")


@contextmanager
def polled(settings: Settings) -> Iterator[threading.Event]:
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_polled(settings, "kitchen", settings.sources["kitchen"], stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors


def catalogued(settings: Settings) -> tuple[set[str], set[str]]:
    """(names of the files present, names of those marked gone) in the catalog."""
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            rows = db.execute(select(SourceFile.ref, SourceFile.gone)).all()
    finally:
        catalog.close()
    return {r for r, g in rows if not g}, {r for r, g in rows if g}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["library", "index"])
def test_a_polled_source_picks_up_a_new_file_and_a_removal_and_stops_promptly(
    tmp_path: Path, exiftool_available: None, mode: str
) -> None:
    folder = tmp_path / "kitchen"
    photo(folder, 0)
    removed = photo(folder, 1)
    settings = poll_settings(tmp_path, mode=mode)
    with polled(settings) as stop:
        eventually(lambda: catalogued(settings)[0] == {"k0.jpg", "k1.jpg"}, 20)
        photo(folder, 2)
        # One poll interval plus one ingest (a loaded CI machine makes the ingest slow).
        found = eventually(lambda: "k2.jpg" in catalogued(settings)[0], 20)
        removed.unlink()
        gone = eventually(lambda: catalogued(settings)[1] == {"k1.jpg"}, 20)
        stopping = time.monotonic()
        stop.set()
    stopped = time.monotonic() - stopping
    print(
        f"poll_seconds 1: new file in {found:.2f} s, removal in {gone:.2f} s, stop {stopped:.3f} s"
    )
    assert stopped < 1.0, f"stopped after {stopped:.2f} s"
    catalog = open_catalog(settings.catalog_url)
    try:  # the thumbnails the ingest would have made (thumbs.on_import is off here)
        assert thumbnails_run(settings, catalog, "pending").made == 3
    finally:
        catalog.close()
    with app_for(settings) as app:
        listed = get(app, "/files/list").json()
        assert listed["total_files"] == 3  # the removed file's asset stays
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            flags = {a.index_only for a in db.scalars(select(Asset))}
    finally:
        catalog.close()
    assert flags == {mode == "index"}


def test_picpipe_watch_polls_a_named_source_and_remote_kinds_unasked(
    tmp_path: Path, exiftool_available: None
) -> None:
    photo(tmp_path / "kitchen", 0)
    settings = poll_settings(tmp_path)
    # A folder can watch: polled only when named; a kind without can_watch is polled unasked.
    assert live_runner(settings.sources["kitchen"]) is None
    assert pollable("folder") is False
    stop = threading.Event()
    result: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: result.update(run_live_sources(settings, ["kitchen"], stop))
    )
    thread.start()
    try:
        eventually(lambda: catalogued(settings)[0] == {"k0.jpg"}, 10)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result == {"kitchen": None}


def test_pollable_follows_the_kinds_caps_and_the_explicit_list() -> None:
    assert pollable("watched") is False
    assert pollable("no-such-kind") is False
    POLLED_KINDS.add("watched")  # the registry a kind joins to be polled whatever its caps
    try:
        assert pollable("watched") is True
    finally:
        POLLED_KINDS.discard("watched")
