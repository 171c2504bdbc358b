"""One way to hold a run: a leased catalog row, a heartbeat, recovery of stale runs, events.

`LeasedRun` is what every kind of run (import, sync, thumbs, sidecars) enters: it first
recovers runs that are stale (their lease expired, or their local process is gone) — their own
temp files only, then marks them interrupted —, creates its own run with the exclusion keys it
needs (CatalogBusy when a live run holds one), renews its lease from a thread, and publishes
the run's events to its sinks. A run whose lease could not be renewed in time, or was taken
over, sets ``lost``; the work loop checks it and stops (as restic does since 0.16 rather than
running on without its lock).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from picpipe.catalog import runs as q
from picpipe.errors import CatalogError, RunLeaseLost
from picpipe.events import ItemDone, ItemFailed, Progress, RunFinished, RunStarted
from picpipe.library.writer import sweep_temp_files

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path
    from types import TracebackType

    from picpipe.catalog.db import Catalog
    from picpipe.config import RunOptions, Settings
    from picpipe.events import Event, EventSink
    from picpipe.jobs.report import RunReport
    from picpipe.pipeline.exiftool import ExifToolPool

log = logging.getLogger(__name__)


def recover_stale_runs(catalog: Catalog, *, host: str, library_root: Path | None) -> list[int]:
    """End stale runs as interrupted, after sweeping their temp files from the library.

    In that order, so a crash during the sweep leaves them running and the next run sweeps
    again. Touches only what stale runs owned: live runs elsewhere keep their temp files.
    """
    with catalog.session() as db:
        stale = [run.id for run in q.stale_runs(db, host=host)]
    if not stale:
        return []
    log.warning("%d earlier run(s) were interrupted (%s); recovering", len(stale), stale)
    if library_root is not None:
        sweep_temp_files(library_root, run_ids=stale)
    with catalog.write() as db:
        q.mark_interrupted(db, stale)
    return stale


class LeasedRun:
    """A run held in the catalog for the duration of a ``with`` block.

    ``status`` may be set by the body; otherwise the block's outcome decides it (completed,
    interrupted on KeyboardInterrupt, failed on an error). Raises CatalogBusy on entry when
    another live run holds one of ``keys``.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        kind: str,
        device: str,
        keys: Sequence[str],
        options: RunOptions,
        library_root: Path | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self.catalog = catalog
        self.kind = kind
        self.device = device
        self.keys = tuple(dict.fromkeys(keys))
        self.options = options
        self.library_root = library_root
        self.sinks = list(sinks)
        self.id = 0
        self.status: str | None = None
        self.error: str | None = None
        self.lost = threading.Event()
        self.report: RunReport | None = None
        self._progress: dict[str, Any] = {"stage": kind, "done": 0, "total": None}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return self.options.host

    # -- the block ---------------------------------------------------------------------------

    def __enter__(self) -> LeasedRun:
        recover_stale_runs(self.catalog, host=self.host, library_root=self.library_root)
        owner = q.Owner.this_process(self.host)
        with self.catalog.write() as db:
            run = q.begin_run(
                db,
                kind=self.kind,
                device=self.device,
                owner=owner,
                lease_seconds=self.options.lease_seconds,
                keys=self.keys,
            )
            self.id = run.id
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{self.id}", daemon=True)
        self._beat.start()
        self.publish(RunStarted(self.id, self.kind, self.device))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        status = self.status
        if status is None or exc_type is not None:
            if exc_type is None:
                status = "completed"
            elif issubclass(exc_type, KeyboardInterrupt):
                status = "interrupted"
            else:
                status = "failed"
                self.error = self.error or (str(exc) if exc is not None else None)
        self.status = status
        try:
            with self.catalog.write() as db:
                q.end_run(db, self.id, status, error=self.error)
        except CatalogError as end_error:
            # The catalog is gone too: the lease lapses and the next run recovers this one.
            log.error("run %d could not be marked %s: %s", self.id, status, end_error.message)
        self.publish(RunFinished(self.id, self.kind, status, self.report))

    # -- events --------------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every sink; progress is kept for the next heartbeat."""
        with self._lock:
            if isinstance(event, Progress):
                self._progress = {"stage": event.stage, "done": event.done, "total": event.total}
            elif isinstance(event, ItemDone | ItemFailed):
                self._progress["done"] = int(self._progress.get("done") or 0) + 1
        for sink in self.sinks:
            sink(event)

    def set_progress(self, progress: dict[str, Any]) -> None:
        """Replace the progress JSON stored with the next heartbeat (a watcher's status)."""
        with self._lock:
            self._progress = dict(progress)

    def check(self) -> None:
        """Raise RunLeaseLost when the lease was lost (the work loop calls this between items)."""
        if self.lost.is_set():
            raise RunLeaseLost(run_id=self.id, detail="not renewed in time or taken over")

    # -- the heartbeat -------------------------------------------------------------------------

    def save_progress(self) -> None:
        """Write the progress JSON now, with a lease renewal, rather than at the next beat (a
        service whose status changed); a catalog error is logged, the heartbeat goes on."""
        with self._lock:
            progress = dict(self._progress)
        try:
            with self.catalog.write() as db:
                q.renew_lease(
                    db,
                    self.id,
                    lease_seconds=self.options.lease_seconds,
                    keys=len(self.keys),
                    progress=progress,
                )
        except CatalogError as exc:
            log.warning("run %d: progress not saved: %s", self.id, exc.message)

    def _heartbeat(self) -> None:
        interval = self.options.lease_seconds / 3
        renewed = time.monotonic()
        while not self._stop.wait(interval):
            with self._lock:
                progress = dict(self._progress)
            try:
                with self.catalog.write() as db:
                    held = q.renew_lease(
                        db,
                        self.id,
                        lease_seconds=self.options.lease_seconds,
                        keys=len(self.keys),
                        progress=progress,
                    )
            except CatalogError as exc:
                log.warning("run %d: lease not renewed: %s", self.id, exc.message)
                if time.monotonic() - renewed > self.options.lease_seconds:
                    self.lost.set()
                    return
                continue
            if not held:
                log.error("run %d lost its lease (another run took it over); stopping", self.id)
                self.lost.set()
                return
            renewed = time.monotonic()


@contextmanager
def live_source_run(
    settings: Settings, name: str
) -> Iterator[tuple[Catalog, ExifToolPool, LeasedRun]]:
    """What a live source (watched or polled) holds while it runs: its own catalog connection
    and exiftool processes, and the leased "watch" run whose progress is its status. The run
    ends "completed" when the block ends normally."""
    from picpipe.catalog.db import open_catalog
    from picpipe.catalog.runs import WATCH_KIND
    from picpipe.pipeline.exiftool import ExifToolPool

    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    tools = ExifToolPool()
    try:
        with LeasedRun(
            catalog,
            kind=WATCH_KIND,
            device=name,
            keys=[f"watch:{name}"],
            options=settings.runs,
        ) as run:
            yield catalog, tools, run
            run.status = "completed"
    finally:
        tools.close()
        catalog.close()
