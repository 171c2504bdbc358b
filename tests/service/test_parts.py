"""The service's parts on their own: schedules, the job queue and backoff, the status word,
sd_notify over a real socket, and an import that stops between files."""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from picpipe.config import ScheduleOptions, Settings
from picpipe.events import ItemDone, Progress, RunFinished, RunStarted
from picpipe.jobs.report import RunReport
from picpipe.pipeline.runner import ImportStopped
from picpipe.samples import make_sample_set
from picpipe.service.notify import Notifier
from picpipe.service.schedule import Cron, Interval, parse_schedule
from picpipe.service.scheduler import FIRST_RETRY, JobQueue, QueuedJob, Scheduler
from picpipe.service.service import PicpipeService
from picpipe.service.status import StatusTracker
from tests.conftest import LibraryFixture


def test_intervals_and_cron_expressions_parse() -> None:
    assert parse_schedule("every 15m") == Interval(900, "every 15m")
    assert parse_schedule("every 1h30m").seconds == 5400  # type: ignore[union-attr]
    assert parse_schedule("EVERY  6h").seconds == 21600  # type: ignore[union-attr]
    weekly = parse_schedule("0 3 * * 0")
    assert isinstance(weekly, Cron)
    sunday = weekly.next_after(datetime(2026, 12, 4, 12, 0))  # a Friday
    assert sunday == datetime(2026, 12, 6, 3, 0)


@pytest.mark.parametrize(
    "bad", ["every", "every 0s", "every 5 parsecs", "0 3 * *", "61 * * * *", "soon"]
)
def test_a_bad_schedule_is_a_config_error_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match=r"every|cron|interval"):
        parse_schedule(bad)
    with pytest.raises(ValidationError):
        ScheduleOptions(sync=bad)


def test_the_schedule_section_forbids_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        ScheduleOptions(synk="every 1h")  # type: ignore[call-arg]
    assert Settings(schedule={"sync": None}).schedule.sync is None  # type: ignore[arg-type]


def test_due_jobs_are_queued_once_and_a_failing_destination_backs_off() -> None:
    now = [datetime(2026, 1, 1, 0, 0, 0)]
    scheduler = Scheduler(ScheduleOptions(sync="every 10s", reconcile=None), clock=lambda: now[0])
    queue = JobQueue()
    scheduler.due(queue)
    assert queue.waiting() == []
    now[0] += timedelta(seconds=10)
    scheduler.due(queue)
    scheduler.due(queue)
    assert queue.waiting() == ["sync"]
    assert not queue.put(QueuedJob("sync", "sync_now"))  # one waits already
    assert not queue.put(QueuedJob("sync", "retry", ("nas",)))  # the full sync covers it
    assert queue.get(0) == QueuedJob("sync", "schedule")

    assert scheduler.destination_failed("nas", "not mounted") == FIRST_RETRY
    now[0] += timedelta(seconds=FIRST_RETRY)
    scheduler.due(queue)
    assert queue.get(0) == QueuedJob("sync", "retry", ("nas",))
    assert scheduler.destination_failed("nas", "still not") == 2 * FIRST_RETRY
    assert scheduler.destination_failed("nas", "still not") == 4 * FIRST_RETRY
    assert scheduler.as_dict()["retrying"]["nas"]["error"] == "still not"
    scheduler.destination_ok("nas")
    assert scheduler.as_dict()["retrying"] == {}


def _report(new: int) -> RunReport:
    return RunReport("import", 1, "completed", {"new": new})


def test_the_status_word_follows_the_runs() -> None:
    tracker = StatusTracker()
    assert tracker.word() == "idle"
    tracker(RunStarted(1, "import", "inbox"))
    assert tracker.word() == "scanning"
    tracker(Progress(1, "scan", 3))
    assert tracker.word() == "scanning"
    tracker(ItemDone(1, "inbox:a.jpg", "new", 10))
    assert tracker.word() == "importing"
    tracker(RunStarted(2, "sync", "nas"))
    assert tracker.word() == "backing_up"  # the busiest word wins
    tracker(RunFinished(1, "import", "completed", _report(1)))
    assert tracker.word() == "backing_up"
    tracker(RunFinished(2, "sync", "failed"))
    assert tracker.word() == "failed"
    tracker(RunStarted(3, "import", "inbox"))
    tracker(RunFinished(3, "import", "completed_with_failures", _report(0)))
    assert tracker.word() == "completed"
    snapshot = tracker.snapshot()
    assert snapshot["last_run"]["status"] == "completed_with_failures"
    assert snapshot["runs_finished"] == 3


def test_an_import_that_added_photos_queues_a_sync(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        destinations={"nas": {"kind": "filesystem", "path": str(tmp_path / "nas")}},
    )
    service = PicpipeService(settings, stop=threading.Event(), notifier=Notifier({}))
    service.publish(RunStarted(1, "import", "inbox"))
    service.publish(RunFinished(1, "import", "completed", _report(0)))
    assert service.queue.waiting() == []
    service.publish(RunFinished(2, "import", "completed", _report(2)))
    assert service.queue.waiting() == ["sync"]
    service.request("rescan")
    service.request("sync_now")
    assert service.queue.waiting() == ["sync", "reconcile"]
    assert service.status_word() == "completed"


def test_sd_notify_messages_arrive_on_a_real_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
        assert notifier.watchdog_seconds == 4.0
        assert notifier.ready("idle")
        assert listener.recv(100) == b"READY=1\nSTATUS=idle"
        assert notifier.watchdog()
        assert listener.recv(100) == b"WATCHDOG=1"
        # A manager that does not read: the queue fills, sends fail at once, never block.
        sent = sum(notifier.watchdog() for _ in range(200))
        assert sent < 200
    other = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    assert other.watchdog_seconds is None  # meant for another process
    assert not Notifier({}).ready()


def test_an_abstract_notify_socket_name_is_used_as_such() -> None:
    name = f"picpipe-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert listener.recv(100) == b"STOPPING=1"


def test_an_import_stops_between_files_and_the_next_run_resumes(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    make_sample_set(folder, count=30)
    stop = threading.Event()
    new: list[str] = []

    def stop_after_first(event: object) -> None:
        if isinstance(event, ItemDone) and event.outcome == "new":
            new.append(event.path)
            stop.set()

    from picpipe.jobs.workflows import ingest

    source = sqlite_library.folder(folder, "photos")
    with pytest.raises(ImportStopped):
        ingest(
            sqlite_library.settings,
            sqlite_library.catalog,
            [source],
            tools=sqlite_library.tools,
            sinks=[stop_after_first],
            workers=2,
            stop=stop,
        )
    # It ended with the files in flight (at most 4 per worker), not at the end of the run.
    assert 1 <= len(new) <= 2 * 4 + 1
    again = sqlite_library.run(sqlite_library.folder(folder, "photos"))
    assert again.new == 30 - len(new)  # what the stopped run recorded is not imported twice
    assert again.unchanged >= len(new)


def _first_passes(root: Path, catalog_file: Path, threads: int) -> tuple[list[str], list[str]]:
    """``threads`` first ingests' library checks at once; their library ids and errors."""
    from picpipe.catalog.db import open_catalog
    from picpipe.library.marker import ensure_library

    catalog = open_catalog(f"sqlite:///{catalog_file}")
    ids: list[str] = []
    errors: list[str] = []
    start = threading.Barrier(threads)

    def first_pass() -> None:
        start.wait()
        try:
            ids.append(ensure_library(root, catalog).library_id)
        except Exception as exc:
            errors.append(repr(exc))

    running = [threading.Thread(target=first_pass) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    catalog.close()
    return ids, errors


def test_first_passes_of_several_watchers_create_the_library_once(tmp_path: Path) -> None:
    from picpipe.library.marker import read_marker

    for attempt in range(5):
        root = tmp_path / f"library-{attempt}"
        ids, errors = _first_passes(root, tmp_path / f"catalog-{attempt}.db", 4)
        assert errors == []
        marker = read_marker(root)
        assert marker is not None
        assert set(ids) == {marker.library_id}


def test_the_workers_jobs_reconcile_sync_and_scrub(
    sqlite_library: LibraryFixture, tmp_path: Path
) -> None:
    folder, backup = tmp_path / "photos", tmp_path / "backup"
    make_sample_set(folder, count=6)
    backup.mkdir()
    settings = sqlite_library.settings.model_copy(
        update={
            "sources": {"photos": {"kind": "folder", "path": str(folder)}},
            "destinations": {"nas": {"kind": "filesystem", "path": str(backup), "fsync": False}},
        }
    )
    service = PicpipeService(settings, stop=threading.Event(), notifier=Notifier({}))
    catalog, tools = sqlite_library.catalog, sqlite_library.tools
    rescan = service.run_job(catalog, tools, QueuedJob("reconcile", "rescan"))
    assert rescan.ok
    assert rescan.report["new"] == 6
    assert service.queue.waiting() == ["sync"]  # photos were added: a sync follows
    synced = service.run_job(catalog, tools, QueuedJob("sync", "after import"))
    assert synced.ok
    assert synced.report["destinations"]["nas"]["uploaded"] == 6
    scrub = service.run_job(catalog, tools, QueuedJob("scrub", "schedule"))
    assert scrub.ok
    assert scrub.report["checked"] == 6
    # A damaged original: the scrub says so, the service goes on.
    original = next((settings.library_root / "originals").rglob("*.jpg"))
    original.write_bytes(b"not the photo")
    damaged = service.run_job(catalog, tools, QueuedJob("scrub", "schedule"))
    assert not damaged.ok
    assert damaged.failed_items == 1
    assert service.status_word() == "completed"
