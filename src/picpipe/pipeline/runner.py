"""Compose the stages and run an import session over one or more sources.

The scan runs in the calling thread and decides "unchanged" from the catalog's index of the
source (one query, no per-file database access). Changed and new files become tasks that a
worker pool takes through the stages; finished tasks are recorded in batches. Item errors
are recorded and the run goes on; library and catalog errors abort it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from picpipe.catalog.models import ImportSession
from picpipe.catalog.models import Source as SourceRow
from picpipe.catalog.queries import (
    ensure_source,
    forget_folders,
    mark_folders_gone,
    mark_gone,
    mark_present,
    save_folder_digests,
    session_assets,
    stale_sessions,
    start_session,
    utcnow,
)
from picpipe.errors import CatalogBusy, ItemError, LibraryError
from picpipe.events import EventSink, ItemFinished, ScanProgress, SessionFinished, SessionStarted
from picpipe.jobs.worker import LocalWorkerPool
from picpipe.library.writer import check_writable, sweep_temp_files
from picpipe.pipeline.dates import resolve_timezone
from picpipe.pipeline.pairs import link_pairs
from picpipe.pipeline.record import Recorder, SessionCounts
from picpipe.pipeline.scan import (
    ScanIndex,
    folder_digest,
    folder_of,
    unchanged,
)
from picpipe.pipeline.stages import IMPORT_STAGES, Stage, StageContext
from picpipe.pipeline.task import ImportTask
from picpipe.pipeline.zones import configured_zones
from picpipe.sources.base import ScanProblem, Source

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.pipeline.exiftool import ExifToolPool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What one import did; ``import --json`` prints this."""

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

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "status": self.status,
            "seen": self.seen,
            "new": self.new,
            "duplicate": self.duplicate,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "failures": self.failures,
            "warnings": self.warnings,
        }


def run_stages(ctx: StageContext, task: ImportTask, stages: Sequence[Stage]) -> ImportTask:
    """Take one task through ``stages`` until it has an outcome.

    The per-item error boundary: an ItemError (or any unexpected error) fails this task only;
    a retryable one (a torn read, a full disk) is tried again on the next run. LibraryError
    propagates and ends the run.
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
    except ItemError as exc:
        return _fail(task, exc)
    except LibraryError:
        raise
    except Exception as exc:
        log.exception("unexpected error importing %s", task.display)
        return _fail(task, ItemError(path=task.display, detail=f"internal error: {exc!r}"))


def _fail(task: ImportTask, error: ItemError) -> ImportTask:
    task.error = error
    task.outcome = "failed"
    log.warning("%s: %s", task.display, error.reason)
    return task


class ImportRun:
    """One import session over ``sources`` (built by the CLI or a service)."""

    def __init__(
        self,
        ctx: StageContext,
        home: Path,
        *,
        workers: int,
        move: bool = False,
        events: EventSink | None = None,
        stages: Sequence[Stage] = IMPORT_STAGES,
    ) -> None:
        self.ctx = ctx
        self.catalog: Catalog = ctx.catalog
        self.home = home
        self.workers = workers
        self.move = move
        self.events = events or (lambda _e: None)
        self.stages = tuple(stages)

    def run(self, sources: Sequence[Source]) -> SessionSummary:
        """Import every source; raises CatalogBusy when another import holds the lock."""
        started = time.monotonic()
        with import_lock(self.home):
            check_writable(self.ctx.library_root)
            self._recover_interrupted()
            with self.catalog.session() as db, db.begin():
                run = start_session(db, kind="import", device=", ".join(s.name for s in sources))
                session_id = run.id
            self.events(SessionStarted(session_id, tuple(s.name for s in sources)))
            recorder = Recorder(self.catalog, session_id, self.ctx.claims, move=self.move)
            # One pool for the whole session: its threads (and their exiftool processes) are
            # reused from one source to the next.
            pool: LocalWorkerPool[ImportTask, ImportTask] = LocalWorkerPool(
                lambda task: run_stages(self.ctx, task, self.stages), workers=self.workers
            )
            status = "failed"
            try:
                for source in sources:
                    self._import_source(source, session_id, recorder, pool)
                self._link_pairs(session_id)
                status = "completed_with_failures" if recorder.counts.failed else "completed"
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            finally:
                self.ctx.claims.release_all()
                pool.shutdown(cancel=True)
                recorder.flush()
                self._finish(session_id, status)
                self.events(SessionFinished(session_id, status))
        summary = _summary(session_id, status, recorder.counts, time.monotonic() - started)
        c = recorder.counts
        log.info(
            "session %d %s: %d seen, %d new, %d duplicate, %d unchanged, %d failed, %d bytes",
            session_id,
            status,
            c.seen,
            c.new,
            c.duplicate,
            c.unchanged,
            c.failed,
            c.bytes,
            extra={
                "session": summary.as_dict()
                | {"failures": len(c.failures), "warnings": len(c.warnings)}
            },
        )
        return summary

    # -- one source ----------------------------------------------------------------------

    def _import_source(
        self,
        source: Source,
        session_id: int,
        recorder: Recorder,
        pool: LocalWorkerPool[ImportTask, ImportTask],
    ) -> None:
        with self.catalog.session() as db, db.begin():
            source_id = ensure_source(
                db, name=source.name, kind=source.kind, location=source.location
            ).id
        index = ScanIndex.load(self.catalog, source_id)
        log.info("scanning %s (%d folders known)", source.name, len(index.stored))
        counts = recorder.counts
        reappeared: list[int] = []
        listing_complete = True
        files_in: dict[str, int] = {}
        for item in source.listing():
            if isinstance(item, ScanProblem):
                listing_complete = False
                index.unsettled.add(folder_of(item.ref))
                recorder.add_problem(source_id, f"{source.name}:{item.ref}", item.reason)
                continue
            files = len(item)
            counts.seen += files
            files_in[item.folder] = files_in.get(item.folder, 0) + files
            self.events(ScanProgress(session_id, counts.seen, pool.in_flight))
            if index.is_unchanged(item, folder_digest(item)):
                counts.unchanged += files
                continue
            known_rows = index.rows(item.folder)
            for entry in item.entries:
                known = known_rows.pop(entry.ref, None)
                if unchanged(known, entry.size, entry.mtime_ns):
                    counts.unchanged += 1
                    if known is not None and known.gone:
                        reappeared.append(known.id)
                    continue
                task = ImportTask(source=source, source_id=source_id, entry=entry, known=known)
                for done in pool.submit(task):
                    self._finished(recorder, done, session_id, index)
            index.not_seen_again(item.folder, [k.id for k in known_rows.values() if not k.gone])
            for done in pool.finished():
                self._finished(recorder, done, session_id, index)
        for done in pool.drain():
            self._finished(recorder, done, session_id, index)
        recorder.flush()
        self._settle(index, reappeared, files_in, listing_complete)

    def _finished(
        self, recorder: Recorder, task: ImportTask, session_id: int, index: ScanIndex
    ) -> None:
        recorder.add(task)
        if task.error is not None and task.error.retryable:
            index.unsettled.add(folder_of(task.entry.ref))
        reason = task.error.reason if task.error else None
        assert task.outcome is not None
        self.events(ItemFinished(session_id, task.display, task.outcome, task.entry.size, reason))

    def _settle(
        self,
        index: ScanIndex,
        reappeared: list[int],
        files_in: dict[str, int],
        complete: bool,
    ) -> None:
        """After a source's tasks are recorded: gone files, vanished folders, new digests."""
        with self.catalog.session() as db, db.begin():
            if complete:
                mark_gone(db, [i for ids in index.gone.values() for i in ids])
                vanished = index.vanished_folders()
                mark_folders_gone(db, index.source_id, vanished)
                forget_folders(db, index.source_id, vanished)
            mark_present(db, reappeared)
            forget_folders(db, index.source_id, sorted(index.unsettled & set(index.stored)))
            save_folder_digests(db, index.source_id, index.digests_to_save(), files_in)
            source_row = db.get_one(SourceRow, index.source_id)
            source_row.last_scan_at = utcnow()

    def _link_pairs(self, session_id: int) -> None:
        with self.catalog.session() as db, db.begin():
            link_pairs(db, session_assets(db, session_id))

    # -- session bookkeeping ---------------------------------------------------------------

    def _recover_interrupted(self) -> None:
        """Sessions left "running" by a killed process: sweep their temp files, then mark them.

        In that order, so that a crash during the sweep leaves them "running" and the next
        import sweeps again.
        """
        with self.catalog.session() as db:
            stale = [run.id for run in stale_sessions(db, "import")]
        if not stale:
            return
        log.warning("%d earlier import(s) were interrupted; resuming", len(stale))
        sweep_temp_files(self.ctx.library_root)
        with self.catalog.session() as db, db.begin():
            for run in stale_sessions(db, "import"):
                run.status = "interrupted"
                run.ended_at = run.ended_at or utcnow()

    def _finish(self, session_id: int, status: str) -> None:
        with self.catalog.session() as db, db.begin():
            run = db.get_one(ImportSession, session_id)
            run.status = status
            run.ended_at = utcnow()


def build_context(settings: Settings, catalog: Catalog, exiftool: ExifToolPool) -> StageContext:
    """The shared state of one run, from the effective settings."""
    return StageContext(
        library_root=settings.library_root,
        catalog=catalog,
        exiftool=exiftool,
        default_tz=resolve_timezone(settings.imports.default_timezone),
        fsync=settings.imports.fsync,
        zones=configured_zones(settings),
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
    )


@contextmanager
def import_lock(home: Path, name: str = "import") -> Iterator[None]:
    """One ``name`` run (import, sync) at a time per local root: a second one gets CatalogBusy
    at once, not a wait."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CatalogBusy(detail=f"lock {home / f'{name}.lock'}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
