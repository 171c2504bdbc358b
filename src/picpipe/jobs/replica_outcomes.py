"""The replica state machine's catalog writes and a sync's outcomes: tallies, events, the
run's counts, and destinations found unreachable. `SyncRun` is built on this; every write is
committed before the next step."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from picpipe.catalog import replicas as q
from picpipe.catalog.queries import add_session_failures, utcnow, write_session_counts
from picpipe.errors import (
    CatalogError,
    DestinationAuthFailed,
    DestinationUnavailable,
    PicpipeError,
)
from picpipe.events import ItemDone, ItemFailed

if TYPE_CHECKING:
    import threading

    from picpipe.catalog.db import Catalog
    from picpipe.events import Event, ReplicaOutcome
    from picpipe.jobs.sync_plan import SyncJob, SyncTarget
    from picpipe.jobs.sync_report import DestinationTally, SyncReport

log = logging.getLogger(__name__)

STRIKES = 5  # transfers in a row failing as unreachable before the destination is re-checked


class ReplicaOutcomes:
    """Replica rows, tallies and events of one sync run (mixed into `SyncRun`)."""

    catalog: Catalog
    _lock: threading.Lock
    _report: SyncReport
    _session_id: int

    def _publish(self, event: Event) -> None:
        raise NotImplementedError

    def _write(self, target: SyncTarget, sha256: str, *, bump: bool = False, **fields: Any) -> None:
        with self.catalog.write() as db:
            q.set_replica(db, target.destination_id, sha256, **fields)
            if bump:
                q.bump_attempts(db, target.destination_id, sha256)

    def _verified(
        self,
        target: SyncTarget,
        job: SyncJob,
        key: str,
        method: str,
        report: SyncReport,
        *,
        present: bool = False,
        reverified: bool = False,
        **fields: Any,
    ) -> None:
        """Mark the replica verified (with any ``extra``/``etag`` the upload left)."""
        self._write(
            target,
            job.asset.sha256,
            state=q.VERIFIED,
            remote_key=key,
            checksum=job.asset.sha256,
            verified_at=utcnow(),
            last_error=None,
            **fields,
        )
        tally = self._tally(target.name)
        with self._lock:
            if present:
                tally.present += 1
            elif reverified:
                tally.reverified += 1
        outcome: ReplicaOutcome = "present" if present else "verified" if reverified else "uploaded"
        self._event(target, job, key, outcome)
        log.debug("%s: %s verified (%s)", target.name, job.library_path, method)

    def _failed(
        self, target: SyncTarget, job: SyncJob, key: str, report: SyncReport, reason: str
    ) -> None:
        try:
            self._write(target, job.asset.sha256, state="failed", last_error=reason[:2000])
        except CatalogError as exc:  # the catalog itself failing is reported, not hidden
            log.error("cannot record the failed replica of %s: %s", job.library_path, exc)
        with self._lock:
            report.destinations[target.name].failed += 1
            report.failures.append((target.name, job.library_path, reason))
        self._event(target, job, key, "failed", reason)
        log.warning("%s: %s: %s", target.name, job.library_path, reason)

    def _tally(self, name: str) -> DestinationTally:
        return self._report.destinations[name]

    def _event(
        self,
        target: SyncTarget,
        job: SyncJob,
        key: str,
        outcome: ReplicaOutcome,
        reason: str | None = None,
    ) -> None:
        run_id = self._session_id
        path, size = job.library_path, job.asset.size
        if outcome == "failed":
            self._publish(ItemFailed(run_id, path, reason or "", size, target.name, key))
        else:
            self._publish(ItemDone(run_id, path, outcome, size, target.name, key))

    # -- session bookkeeping -----------------------------------------------------------------

    def _finish(self, report: SyncReport) -> None:
        """The run's counts and failures (its status is the lease's to write)."""
        tallies = report.destinations.values()
        counts = {
            "seen": sum(t.planned for t in tallies),
            "new": sum(t.uploaded for t in tallies),
            "duplicate": sum(t.present for t in tallies),
            "unchanged": sum(t.reverified for t in tallies),
            "failed": sum(t.failed for t in tallies),
            "bytes": sum(t.bytes for t in tallies),
        }
        with self.catalog.write() as db:
            write_session_counts(db, self._session_id, counts)
            add_session_failures(
                db, self._session_id, [(f"{d}: {p}", r) for d, p, r in report.failures[:5000]]
            )

    # -- reachability ------------------------------------------------------------------------

    def _reachable(self, target: SyncTarget) -> bool:
        """Check ``target`` once before its first remote call: an unmounted NAS, a refused
        connection, bad credentials or a DNS failure stop its part of the run at once (one
        line, exit 11) instead of failing every photo after its retries."""
        with self._lock:
            if target.checked:
                return target.down is None
            target.checked = True
        try:
            found = target.backend.check()
            problem = None if found.ok else (found.detail or "not reachable")
        except PicpipeError as exc:
            problem = exc.reason
        if problem is not None:
            self._down(target, problem)
        return problem is None

    def _strike(self, target: SyncTarget, error: PicpipeError) -> None:
        """Several transfers in a row failing as unreachable: check the destination again."""
        if not isinstance(error, DestinationUnavailable | DestinationAuthFailed):
            target.strikes = 0
            return
        with self._lock:
            target.strikes += 1
            due = target.strikes == STRIKES and target.down is None
            if due:
                target.checked = False
        if due and not self._reachable(target):
            log.error("%s: stopped after %d transfers failed in a row", target.name, STRIKES)

    def _down(self, target: SyncTarget, problem: str) -> None:
        with self._lock:
            if target.down is not None:
                return
            target.down = problem
            self._report.destinations[target.name].unreachable = problem
            self._report.failures.append((target.name, "(destination)", problem))
        log.error("%s: %s; its part of this sync stops, the others go on", target.name, problem)
