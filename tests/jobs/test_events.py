"""One event stream and one report shape for every kind of run: import, sync, thumbnails.

The CLI's progress display, the JSON reports and the dashboard's view of a running run are all
fed from these events (the heartbeat stores the latest progress in the run's row)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

from sqlalchemy import select

from picpipe.catalog.models import ImportSession
from picpipe.events import Event, ItemDone, ItemFailed, Progress, RunFinished, RunStarted
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.workflows import thumbnails_run
from picpipe.samples import make_jpeg
from tests.conftest import LibraryFixture, run_cli
from tests.jobs.test_replicate import FAST, filesystem

ENVELOPE = {"kind", "run_id", "status", "counts", "bytes", "failures", "warnings", "seconds"}


def bracketed(events: list[Event], kind: str) -> tuple[RunStarted, RunFinished, list[Event]]:
    """The run's first and last events, and what came between them."""
    first, last = events[0], events[-1]
    assert isinstance(first, RunStarted)
    assert isinstance(last, RunFinished)
    assert (first.kind, last.kind, last.run_id) == (kind, kind, first.run_id)
    assert not [e for e in events[1:-1] if isinstance(e, RunStarted | RunFinished)]
    return first, last, events[1:-1]


def test_import_sync_and_thumbnails_publish_one_stream_and_one_report_shape(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "phone"
    for i in range(4):
        make_jpeg(source / f"IMG_{i}.jpg", taken=datetime(2023, 5, 1, 10, i), seed=i)
    (source / "copy").mkdir()
    shutil.copyfile(source / "IMG_0.jpg", source / "copy" / "IMG_0.jpg")
    (source / "empty.jpg").write_bytes(b"")

    imported: list[Event] = []
    summary = library.run(library.folder(source), sinks=[imported.append])
    started, finished, between = bracketed(imported, "import")
    assert started.run_id == summary.session_id
    done = [e for e in between if isinstance(e, ItemDone)]
    failed = [e for e in between if isinstance(e, ItemFailed)]
    assert sorted(e.outcome for e in done) == ["duplicate", "new", "new", "new", "new"]
    assert [e.path.rsplit(":", 1)[1] for e in failed] == ["empty.jpg"]
    assert failed[0].reason == "file is empty (0 bytes); nothing to import"
    progress = [e for e in between if isinstance(e, Progress)]
    scans = [e for e in progress if e.stage == "scan"]
    assert scans
    assert scans[-1].done == 6
    # then one "import" event: the listing is complete, 6 is the final count
    assert (progress[-1].stage, progress[-1].done) == ("import", 6)
    assert finished.status == "completed_with_failures"
    assert finished.report is not None
    assert finished.report.as_dict() | summary.as_dict() == summary.as_dict()

    synced: list[Event] = []
    dest = filesystem(tmp_path, "nas")
    report = SyncRun(
        library.catalog,
        library.root,
        {"nas": dest},
        policy=FAST,
        concurrency={"nas": 2},
        sinks=[synced.append],
        runs=library.settings.runs,
    ).run()
    started, finished, between = bracketed(synced, "sync")
    uploads = [e for e in between if isinstance(e, ItemDone)]
    assert [(e.target, e.outcome) for e in uploads] == [("nas", "uploaded")] * 4
    planned = [e for e in between if isinstance(e, Progress)]
    assert planned[-1].stage == "replicating"
    assert planned[-1].total == 4
    assert finished.report is not None
    assert finished.report.counts["uploaded"] == report.report().counts["uploaded"] == 4

    made: list[Event] = []
    thumbs = thumbnails_run(library.settings, library.catalog, "missing", sinks=[made.append])
    started, finished, between = bracketed(made, "thumbs")
    progress = [e for e in between if isinstance(e, Progress)]
    assert progress[-1].stage == "thumbnails"
    assert (progress[-1].done, progress[-1].total) == (4, 4)
    assert len([e for e in between if isinstance(e, ItemDone)]) == thumbs.made == 4

    # One report shape: every kind's report, and the JSON each command prints, share it.
    for shape in (summary.as_dict(), report.as_dict(), thumbs.as_dict()):
        assert set(shape) >= ENVELOPE, shape
    with library.catalog.session() as db:
        runs = list(db.scalars(select(ImportSession).order_by(ImportSession.id)))
    assert [(r.kind, r.status) for r in runs] == [
        ("import", "completed_with_failures"),
        ("sync", "completed"),
        ("thumbs", "completed"),
    ]
    assert [r.lease_until for r in runs] == [None] * 3, "ended runs hold no lease"


def test_every_command_that_runs_work_prints_the_shared_envelope(
    library: LibraryFixture, tmp_path: Path
) -> None:
    source = tmp_path / "card"
    make_jpeg(source / "IMG_1.jpg", taken=datetime(2021, 1, 2))
    nas = tmp_path / "nas"
    nas.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(f"destinations:\n  nas:\n    kind: filesystem\n    path: {nas}\n")
    env = {
        "PICPIPE_HOME": str(library.settings.home_root),
        "PICPIPE_LIBRARY": str(library.root),
        "PICPIPE_DATABASE_URL": library.settings.catalog_url,
        "PICPIPE_CONFIG": str(config),
    }
    for args in (("import", str(source)), ("sync",), ("thumbs", "--all"), ("sidecars", "--write")):
        result = run_cli(*args, "--json", env=env)
        assert result.returncode == 0, result.stderr
        shape = json.loads(result.stdout)
        assert set(shape) >= ENVELOPE, (args, shape)
        assert shape["kind"] == args[0]
        assert isinstance(shape["run_id"], int)
