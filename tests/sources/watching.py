"""Helpers for the watcher tests: a watcher running in a thread, waiting on the catalog."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from picpipe.catalog.models import Asset, SourceFile
from picpipe.jobs.watch import run_watched
from tests.conftest import LibraryFixture


@contextmanager
def watching(
    library: LibraryFixture, name: str, options: dict[str, Any]
) -> Iterator[threading.Event]:
    """Run the watcher of source ``name`` until the block ends (then it must stop soon)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            run_watched(library.settings, name, options, stop)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the watcher did not stop"
    assert not errors, errors


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def assets(library: LibraryFixture) -> list[Asset]:
    with library.catalog.session() as db:
        return list(db.scalars(select(Asset)))


def names(library: LibraryFixture) -> list[str]:
    return sorted(a.original_name for a in assets(library))


def source_files(library: LibraryFixture) -> dict[str, SourceFile]:
    with library.catalog.session() as db:
        return {r.ref: r for r in db.scalars(select(SourceFile))}


def library_files(library: LibraryFixture) -> list[Path]:
    """The originals placed in the library (by the catalog's paths)."""
    return sorted(library.root / a.library_path for a in assets(library))
