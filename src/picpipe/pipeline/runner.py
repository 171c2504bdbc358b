"""An import over one or more sources, inside a run leased in the catalog.

The scan runs in the calling thread and decides "unchanged" from the catalog's index of the
source (one query, no per-file database access). Changed and new files become tasks that the
executor (`jobs/`) takes through the stages; finished tasks are recorded in batches. Item
errors are recorded and the run goes on; library and catalog errors end it. A task whose
content another task is placing right now (a twin in this run, or the same photo seen by an
importer on another machine) waits, and is tried again once the owner's result is committed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picpipe.catalog.queries import (
    ensure_source,
    forget_folders,
    mark_folders_gone,
    mark_gone,
    mark_present,
    save_folder_digests,
    session_assets,
    touch_source_scan,
)
from picpipe.errors import CatalogError, ContentClaimed, ItemError, LibraryError
from picpipe.events import ItemDone, ItemFailed, Progress
from picpipe.jobs.report import RunReport
from picpipe.library.staging import staging_root
from picpipe.pipeline.dates import resolve_timezone
from picpipe.pipeline.pairs import link_pairs
from picpipe.pipeline.places import use_cache_dir
from picpipe.pipeline.record import Recorder, SessionCounts
from picpipe.pipeline.remote_import import RemoteImport
from picpipe.pipeline.scan import (
    ScanIndex,
    folder_digest,
    folder_of,
    skip_row_current,
    still_skipped,
    unchanged,
)
from picpipe.pipeline.stages import IMPORT_STAGES, Stage, StageContext
from picpipe.pipeline.task import ImportTask
from picpipe.pipeline.zones import configured_zones
from picpipe.sources.base import ScanProblem, Source, source_mode

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.jobs.runs import LeasedRun
    from picpipe.jobs.worker import Executor
    from picpipe.pipeline.exiftool import ExifToolPool

log = logging.getLogger(__name__)

RETRY_PAUSE = 0.2  # seconds between looks at a claim another run holds


class ImportStopped(KeyboardInterrupt):  # ends the import as Ctrl-C does: status interrupted
    """The run's stop was set: the files in hand were finished and recorded, the rest of the
    source is left for the next run (nothing is marked gone, no folder digest is saved)."""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What one import did; ``import --json`` prints this (with the shared report fields)."""

    session_id: int
    status: str
    seen: int
    new: int
    duplicate: int
    unchanged: int
    failed: int
    bytes: int
    seconds: float
    failures: list[dict[str, str]]
    warnings: list[dict[str, str]]
    skipped: int = 0

    def report(self) -> RunReport:
        counts = {
            "seen": self.seen,
            "new": self.new,
            "duplicate": self.duplicate,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "skipped": self.skipped,
        }
        return RunReport(
            "import",
            self.session_id,
            self.status,
            counts,
            self.bytes,
            self.failures,
            self.warnings,
            self.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        return self.report().as_dict() | {
            "session_id": self.session_id,
            "seen": self.seen,
            "new": self.new,
            "duplicate": self.duplicate,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "skipped": self.skipped,
        }


def run_stages(ctx: StageContext, task: ImportTask, stages: Sequence[Stage]) -> ImportTask:
    """Take one task through ``stages`` until it has an outcome.

    The per-item error boundary: an ItemError (or any unexpected error) fails this task only;
    a retryable one (a torn read, a full disk) is tried again on the next run. A claim held by
    another task defers this one. LibraryError and CatalogError propagate and end the run:
    a file is never marked failed because the database blinked.
    """
    task.attempts += 1
    try:
        for stage in stages:
            stage(ctx, task)
            if task.done:
                break
        if not task.done:
            task.outcome = "new"
        return task
    except ContentClaimed as exc:
        task.deferred = True
        task.error = exc
        return task
    except ItemError as exc:
        return _fail(task, exc)
    except (LibraryError, CatalogError):
        raise
    except Exception as exc:
        log.exception("unexpected error importing %s", task.display)
        return _fail(task, ItemError(path=task.display, detail=f"internal error: {exc!r}"))


def _fail(task: ImportTask, error: ItemError) -> ImportTask:
    task.error = error
    task.outcome = "failed"
    task.deferred = False
    log.warning("%s: %s", task.display, error.reason)
    return task


class ImportRun:
    """One import over ``sources`` in the leased ``run``; tasks go through ``executor``."""

    def __init__(
        self,
        ctx: StageContext,
        run: LeasedRun,
        executor: Executor[ImportTask, ImportTask],
        *,
        move: bool = False,
        stages: Sequence[Stage] = IMPORT_STAGES,
        wait_for_claims: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.ctx = ctx
        self.catalog: Catalog = ctx.catalog
        self.run_lease = run
        self.pool = executor
        self.move = move
        self.stages = tuple(stages)
        # How long a task waits for another run's claim: past two leases a dead owner's claim
        # has been taken over, so a claim still held means a live run is slow.
        self.wait_for_claims = wait_for_claims or 2 * run.options.lease_seconds + 5
        self._remote: RemoteImport | None = None  # the source being imported, if it remembers
        # Checked between files: a service stopping mid-batch ends within a few files, not
        # after the whole batch (SIGTERM under systemd has a deadline).
        self.stop = stop

    def run(self, sources: Sequence[Source]) -> SessionSummary:
        """Import every source; the run's status is set from the outcome."""
        started = time.monotonic()
        session_id = self.run_lease.id
        self.ctx.sources.update({source.name: source for source in sources})
        recorder = Recorder(self.catalog, session_id, move=self.move, sources=self.ctx.sources)
        status = "failed"
        try:
            for source in sources:
                self._import_source(source, recorder)
            recorder.flush()
            with self.catalog.write() as db:
                link_pairs(db, session_assets(db, session_id))
            status = "completed_with_failures" if recorder.counts.failed else "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            if recorder.pending:
                try:
                    recorder.flush()
                except CatalogError as exc:  # the catalog itself failed: the next run redoes it
                    log.error("last batch of session %d not recorded: %s", session_id, exc)
            self.run_lease.status = status
        summary = _summary(session_id, status, recorder.counts, time.monotonic() - started)
        self.run_lease.report = summary.report()
        c = recorder.counts
        log.info(
            "session %d %s: %d seen, %d new, %d duplicate, %d unchanged, %d failed, %d skipped, "
            "%d bytes",
            session_id,
            status,
            c.seen,
            c.new,
            c.duplicate,
            c.unchanged,
            c.failed,
            c.skipped,
            c.bytes,
            extra={
                "session": summary.as_dict()
                | {"failures": len(c.failures), "warnings": len(c.warnings)}
            },
        )
        return summary

    # -- one source ----------------------------------------------------------------------

    def _import_source(self, source: Source, recorder: Recorder) -> None:
        with self.catalog.write() as db:
            source_id = ensure_source(
                db, name=source.name, kind=source.kind, location=source.location
            ).id
        index = ScanIndex.load(self.catalog, source_id)
        log.info("scanning %s (%d folders known)", source.name, len(index.stored))
        remote = self._remote = RemoteImport(self.catalog, source, source_id)
        counts = recorder.counts
        reappeared: list[int] = []
        listing_complete = True
        files_in: dict[str, int] = {}
        deferred: list[ImportTask] = []
        for item in source.listing():
            self.run_lease.check()
            if isinstance(item, ScanProblem):
                listing_complete = False
                index.unsettled.add(folder_of(item.ref))
                recorder.add_problem(source_id, f"{source.name}:{item.ref}", item.reason)
                continue
            if remote.partial:  # only changes were listed: what is missing is not gone
                listing_complete = False
                index.unsettled.add(item.folder)
            files = len(item)
            counts.seen += files
            files_in[item.folder] = files_in.get(item.folder, 0) + files
            self._progress("scan", counts.seen)
            if index.is_unchanged(item, folder_digest(item)):
                skipped = min(files, index.stored_skipped.get(item.folder, 0))
                counts.skipped += skipped
                counts.unchanged += files - skipped
                continue
            known_rows = index.rows(item.folder)
            for entry in item.entries:
                known = known_rows.pop(entry.ref, None)
                if entry.skipped is not None or (entry.sniff and still_skipped(known, entry)):
                    # Accounted for without reading it; a row only where the catalog differs.
                    if entry.skipped is not None and not skip_row_current(known, entry):
                        task = ImportTask(source.name, source_id, entry, known=known)
                        task.outcome, task.skip_reason = "skipped", entry.skipped
                        self._finished(recorder, task, index, deferred)
                        continue
                    counts.skipped += 1
                    index.count_skipped(item.folder)
                    if known is not None and known.gone:
                        reappeared.append(known.id)
                    continue
                if unchanged(known, entry.size, entry.mtime_ns, entry.ctime_ns):
                    counts.unchanged += 1
                    if known is not None and known.gone:
                        reappeared.append(known.id)
                    continue
                self._stop_point(recorder, index, deferred)
                task = ImportTask(source.name, source_id, entry, known=known)
                for done in self.pool.submit(task):
                    self._finished(recorder, done, index, deferred)
            index.not_seen_again(item.folder, [k.id for k in known_rows.values() if not k.gone])
            remote.unlisted(known_rows)
            for done in self.pool.finished():
                self._finished(recorder, done, index, deferred)
        # The listing is complete: "seen" is final (the dashboard stops saying "at least").
        self._progress("import", counts.seen)
        for done in self.pool.drain():
            self._finished(recorder, done, index, deferred)
        self._retry_deferred(deferred, recorder, index)
        recorder.flush()
        self._settle(index, reappeared, files_in, listing_complete)
        remote.finish()

    def _stop_point(self, recorder: Recorder, index: ScanIndex, deferred: list[ImportTask]) -> None:
        """Raise ImportStopped when the stop is set, after the tasks in flight finished and
        were handed to the recorder (its batch is flushed as the run ends)."""
        if self.stop is None or not self.stop.is_set():
            return
        for done in self.pool.drain():
            self._finished(recorder, done, index, deferred)
        log.info("import stopped between files; the next run goes on from here")
        raise ImportStopped

    def _retry_deferred(
        self, deferred: list[ImportTask], recorder: Recorder, index: ScanIndex
    ) -> None:
        """Tasks that waited for a twin: once the owners' results are committed (which frees
        their claims), each is tried again and usually ends as a duplicate."""
        began = time.monotonic()
        while deferred:
            recorder.flush()
            batch = list(deferred)
            deferred.clear()
            for task in batch:
                task.deferred, task.error = False, None
                for done in self.pool.submit(task):
                    self._finished(recorder, done, index, deferred)
            for done in self.pool.drain():
                self._finished(recorder, done, index, deferred)
            if not deferred:
                return
            self.run_lease.check()
            if time.monotonic() - began > self.wait_for_claims:
                for task in deferred:  # a live run is still at it: retried on the next run
                    assert isinstance(task.error, ContentClaimed)
                    self._finished(recorder, _fail(task, task.error), index, [])
                return
            time.sleep(RETRY_PAUSE)

    def _finished(
        self,
        recorder: Recorder,
        task: ImportTask,
        index: ScanIndex,
        deferred: list[ImportTask],
    ) -> None:
        if task.deferred:
            deferred.append(task)
            return
        recorder.add(task)
        if task.error is not None and self._remote is not None:
            self._remote.failed.add(task.entry.ref)
        if task.outcome == "skipped":
            index.count_skipped(folder_of(task.entry.ref))
        if task.error is not None:
            # A folder with a file that did not import is not settled: its failed files are
            # tried again on the next run, even when nothing about them changed.
            index.unsettled.add(folder_of(task.entry.ref))
        assert task.outcome is not None
        run_id = self.run_lease.id
        if task.error is not None:
            self.run_lease.publish(
                ItemFailed(run_id, task.display, task.error.reason, task.entry.size)
            )
        else:
            self.run_lease.publish(ItemDone(run_id, task.display, task.outcome, task.entry.size))

    def _progress(self, stage: str, done: int) -> None:
        self.run_lease.publish(
            Progress(self.run_lease.id, stage, done, None, queued=self.pool.in_flight)
        )

    def _settle(
        self,
        index: ScanIndex,
        reappeared: list[int],
        files_in: dict[str, int],
        complete: bool,
    ) -> None:
        """After a source's tasks are recorded: gone files, vanished folders, new digests."""
        with self.catalog.write() as db:
            if complete:
                mark_gone(db, [i for ids in index.gone.values() for i in ids])
                vanished = index.vanished_folders()
                mark_folders_gone(db, index.source_id, vanished)
                forget_folders(db, index.source_id, vanished)
            mark_present(db, reappeared)
            forget_folders(db, index.source_id, sorted(index.unsettled & set(index.stored)))
            save_folder_digests(
                db, index.source_id, index.digests_to_save(), files_in, index.skipped
            )
            touch_source_scan(db, index.source_id)


def build_context(settings: Settings, catalog: Catalog, exiftool: ExifToolPool) -> StageContext:
    """The shared state of one run, from the effective settings (the run id comes later)."""
    use_cache_dir(settings.home_root / "cache" / "places")
    return StageContext(
        library_root=settings.library_root,
        catalog=catalog,
        exiftool=exiftool,
        default_tz=resolve_timezone(settings.imports.default_timezone),
        fsync=settings.imports.fsync,
        host=settings.runs.host,
        zones=configured_zones(settings),
        index_sources=frozenset(
            name for name, raw in settings.sources.items() if source_mode(raw) == "index"
        ),
        staging_root=staging_root(settings.home_root),
    )


def _summary(session_id: int, status: str, c: SessionCounts, seconds: float) -> SessionSummary:
    return SessionSummary(
        session_id=session_id,
        status=status,
        seen=c.seen,
        new=c.new,
        duplicate=c.duplicate,
        unchanged=c.unchanged,
        failed=c.failed,
        bytes=c.bytes,
        seconds=seconds,
        failures=[{"path": p, "reason": r} for p, r in c.failures],
        warnings=[{"path": p, "problem": r} for p, r in c.warnings],
        skipped=c.skipped,
    )
