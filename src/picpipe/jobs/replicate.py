"""Replication: every asset to every configured destination, verified at the far end.

Per asset per destination a replica row moves pending → uploading → verifying → verified |
failed, each step committed before the next starts, so a killed run resumes: a row left in
"uploading" or "verifying" is checked at the far end first (the upload may have finished) and
uploaded again only when that check fails, with the backend's resume state where it keeps one.
A replica is marked verified only from a `Verification` that passed; verified replicas are never
uploaded again unless ``--verify`` finds them damaged.

A sync is a run leased in the catalog with one exclusion key per destination
(``sync:<name>``), so two syncs to one destination never run at once, on any machine; new
remote keys are claimed in the catalog (``key:<destination>:<key>``) and unique per
destination, so no key is ever given to two assets. One asset is read once for all the
destinations that need it (`jobs/sync_read.py`).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from picpipe.catalog import replicas as q
from picpipe.catalog.remote_sources import record_sha1s
from picpipe.config import RunOptions
from picpipe.destinations.base import Destination, Digests, collision_key
from picpipe.errors import IntegrityMismatch, PicpipeError
from picpipe.events import Progress
from picpipe.jobs.replica_outcomes import ReplicaOutcomes
from picpipe.jobs.retry import RetryPolicy, call_with_retries
from picpipe.jobs.runs import LeasedRun
from picpipe.jobs.sync_after import link_pairs_and_albums
from picpipe.jobs.sync_edits import EditsSync, read_local_sidecar, record_sent_sidecar
from picpipe.jobs.sync_plan import SyncJob, SyncPlanner, SyncTarget
from picpipe.jobs.sync_read import asset_digests, open_original
from picpipe.jobs.sync_report import INDEX_ONLY, DestinationTally, SyncReport
from picpipe.jobs.sync_sidecars import SidecarSync
from picpipe.pipeline.exiftool import ExifToolPool

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.events import Event, EventSink

log = logging.getLogger(__name__)

T = TypeVar("T")


class SyncRun(ReplicaOutcomes):
    """One ``picpipe sync``: build it with the open destinations, then call `run`."""

    def __init__(
        self,
        catalog: Catalog,
        library_root: Path,
        destinations: dict[str, Destination],
        *,
        policy: RetryPolicy,
        concurrency: dict[str, int],
        verify: bool = False,
        dry_run: bool = False,
        sinks: Sequence[EventSink] = (),
        stop: threading.Event | None = None,
        runs: RunOptions | None = None,
        only: frozenset[str] | None = None,
        sidecar_naming: str = "sha",
    ) -> None:
        self.catalog = catalog
        self.library_root = library_root
        self.destinations = destinations
        self.policy = policy
        self.concurrency = concurrency
        self.verify = verify
        self.dry_run = dry_run
        self.sinks = list(sinks)
        self.stop = stop or threading.Event()
        self.runs = runs or RunOptions()
        self.sidecar_naming = sidecar_naming
        self._lock = threading.Lock()
        self._session_id = 0
        self._lease: LeasedRun | None = None
        self._report = SyncReport(None, "new", dry_run)
        self._planner = SyncPlanner(catalog, verify=verify, host=self.runs.host)
        self._planner.only = only
        if not dry_run:  # a dry run makes no remote call it does not need
            self._planner.reachable = self._reachable
        self._planned = 0

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> SyncReport:
        """Replicate everything not verified yet; returns the report (never raises for items).

        Raises CatalogBusy when a live sync to one of the destinations holds it.
        """
        if self.dry_run:
            return self._run()
        with LeasedRun(
            self.catalog,
            kind="sync",
            device=", ".join(self.destinations),
            keys=[f"sync:{name}" for name in self.destinations],
            options=self.runs,
            sinks=self.sinks,
        ) as lease:
            self._lease = lease
            self._session_id = self._planner.run_id = lease.id
            report = self._run()
            lease.status = report.status
            lease.report = report.report()
        return report

    def _publish(self, event: Event) -> None:
        if self._lease is not None:
            self._lease.publish(event)
        else:
            for sink in self.sinks:
                sink(event)

    def _run(self) -> SyncReport:
        started = time.monotonic()
        report = self._report = SyncReport(self._session_id or None, "running", self.dry_run)
        report.destinations = {name: DestinationTally() for name in self.destinations}
        report.index_only = self._index_only()  # left out of every plan
        if report.index_only:
            log.info("sync: %d index-only asset(s) skipped: %s", report.index_only, INDEX_ONLY)
        targets = self._targets()
        status = "failed"
        pending: list[Future[None]] = []
        in_flight = threading.BoundedSemaphore(max(4, 2 * sum(self.concurrency.values())))
        try:
            for jobs in self._planner.pages(targets):
                self._announce(jobs)
                for job in jobs:
                    if self._lease is not None:
                        self._lease.check()
                    if self.dry_run:
                        self._plan_only(job, report)
                        continue
                    while not in_flight.acquire(timeout=0.5):
                        if self.stop.is_set():
                            raise KeyboardInterrupt
                    if self.stop.is_set():
                        in_flight.release()
                        raise KeyboardInterrupt
                    pending.append(self._dispatch(job, report, in_flight))
                    pending = [f for f in pending if not f.done()]
            for future in pending:
                _wait(future, self.stop)
            if not self.dry_run:
                SidecarSync(self, self.sidecar_naming).run(targets, report)
                tools = ExifToolPool()  # started only when an edited sidecar must be read
                try:
                    EditsSync(self, self.sidecar_naming, tools).run(targets, report)
                finally:
                    tools.close()
                link_pairs_and_albums(self.catalog, targets, report, self._lock)
            status = "completed_with_failures" if report.failed else "completed"
        except KeyboardInterrupt:
            status = "interrupted"
            self.stop.set()
            raise
        finally:
            for target in targets:
                target.pool.shutdown(wait=True, cancel_futures=True)
            report.status = status
            report.seconds = time.monotonic() - started
            if not self.dry_run:
                self._finish(report)
        return report

    def _index_only(self) -> int:
        with self.catalog.session() as db:
            return q.index_only_count(db)

    def _targets(self) -> list[SyncTarget]:
        targets = []
        with self.catalog.write() as db:
            for name, backend in self.destinations.items():
                if self.dry_run:  # writes nothing; a new destination has no replicas yet
                    dest_id = q.destination_id(db, name) or -1
                else:
                    dest_id = q.ensure_destination(db, name, backend.kind)
                workers = self.concurrency.get(name, 4)
                pool = ThreadPoolExecutor(workers, thread_name_prefix=f"sync-{name}")
                targets.append(SyncTarget(name, backend, dest_id, pool))
        return targets

    # -- planning --------------------------------------------------------------------------

    def _announce(self, jobs: list[SyncJob]) -> None:
        for job in jobs:
            for target, _row, _key in job.work:
                self._tally(target.name).planned += 1
        self._planned += sum(len(j.work) for j in jobs)
        done = sum(t.uploaded + t.present + t.reverified + t.failed for t in self._tallies())
        self._publish(Progress(self._session_id, "replicating", done, self._planned))

    def _tallies(self) -> list[DestinationTally]:
        return list(self._report.destinations.values())

    def _plan_only(self, job: SyncJob, report: SyncReport) -> None:
        for target, row, key in job.work:
            action = "verify" if row.replica_state == q.VERIFIED else "upload"
            if row.replica_state in {"uploading", "verifying", "failed"}:
                action = "check, then upload if needed"
            report.planned.append(
                {
                    "destination": target.name,
                    "path": job.library_path,
                    "key": key if not target.backend.caps.keyed_by_server else None,
                    "bytes": job.asset.size,
                    "action": action,
                }
            )
            self._event(target, job, key, "planned")

    # -- one asset -------------------------------------------------------------------------

    def _dispatch(
        self, job: SyncJob, report: SyncReport, in_flight: threading.BoundedSemaphore
    ) -> Future[None]:
        """Read the asset once if a kind needs more digests, then one task per destination."""
        remaining = [len(job.work)]
        done: Future[None] = Future()
        needs = set().union(*(t.backend.caps.needs for t, _r, _k in job.work))
        shared: dict[str, Any] = {}

        def finished() -> None:
            with self._lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                shared.clear()
                in_flight.release()
                done.set_result(None)

        def one(target: SyncTarget, row: q.PlannedAsset, key: str) -> None:
            try:
                self._replicate(target, job, row, key, shared, needs, report)
            except BaseException:
                log.exception("internal error replicating %s to %s", job.library_path, target.name)
                self._failed(target, job, key, report, "internal error (see the log)")
            finally:
                finished()

        for target, row, key in job.work:
            target.pool.submit(one, target, row, key)
        return done

    def _replicate(
        self,
        target: SyncTarget,
        job: SyncJob,
        row: q.PlannedAsset,
        key: str,
        shared: dict[str, Any],
        needs: set[str],
        report: SyncReport,
    ) -> None:
        if self.stop.is_set() or target.down is not None:
            return  # a destination found unreachable gets no more tries in this run
        backend = target.backend
        try:
            digests = self._digests(job, shared, needs)
            if row.replica_state is not None and row.remote_key is not None:
                # Ours from an earlier run: is a finished (or interrupted) copy there and sound?
                check = self._retry(
                    target, job, lambda: backend.verify(key, digests, deep=self.verify)
                )
                was_verified = row.replica_state == q.VERIFIED
                if check.ok:
                    self._verified(
                        target,
                        job,
                        key,
                        check.method,
                        report,
                        reverified=was_verified,
                        present=not was_verified,
                    )
                    return
                if was_verified:
                    log.warning(
                        "%s: %s (%s) is damaged: %s; uploading it again",
                        target.name,
                        key,
                        job.library_path,
                        check.detail,
                    )
                    with self._lock:
                        report.destinations[target.name].repaired += 1
            elif backend.caps.bulk_check:
                finder: Any = backend
                found_now = self._retry(
                    target, job, lambda: finder.find_existing([(job.asset, digests)])
                )
                held = found_now.get(job.asset.sha256)
                if (
                    held is not None
                    and self._retry(target, job, lambda: backend.verify(held.key, digests)).ok
                ):
                    self._verified(target, job, held.key, "present", report, present=True)
                    return
            elif not backend.caps.keyed_by_server:
                found = self._adopt_or_rename(target, job, key, digests)
                if found is None:
                    self._verified(target, job, key, "present", report, present=True)
                    return
                key = found
            self._upload(target, job, row, key, digests, shared, report)
        except PicpipeError as exc:
            if target.down is None:
                self._failed(target, job, key, report, exc.reason)
            self._strike(target, exc)
        else:
            target.strikes = 0

    def _adopt_or_rename(
        self, target: SyncTarget, job: SyncJob, key: str, digests: Digests
    ) -> str | None:
        """None when ``key`` already holds the asset; else the key to upload to.

        A key holding other bytes is someone else's file (never overwritten) unless the key is
        content-addressed (it names the sha256), when it can only be a damaged copy of ours.
        """
        backend = target.backend
        if (target.name, key) in job.absent:
            return key
        for candidate in (key, collision_key(key, digests.sha256)):
            if self._retry(target, job, partial(backend.stat, candidate)) is None:
                return candidate
            if self._retry(target, job, partial(backend.verify, candidate, digests)).ok:
                return None
            if digests.sha256 in candidate:
                return candidate
        raise IntegrityMismatch(
            destination=target.name, key=key, detail="the name is taken by other files"
        )

    def _retry(self, target: SyncTarget, job: SyncJob, call: Callable[[], T]) -> T:
        """One remote call with the run's retry policy (transient errors only)."""
        what = f"{target.name}: {job.library_path}"
        return call_with_retries(call, self.policy, what=what, stop=self.stop)

    def _upload(
        self,
        target: SyncTarget,
        job: SyncJob,
        row: q.PlannedAsset,
        key: str,
        digests: Digests,
        shared: dict[str, Any],
        report: SyncReport,
    ) -> None:
        backend = target.backend
        sha = job.asset.sha256
        resume = dict((row.extra or {}).get("resume") or {}) or None
        self._write(target, sha, state="uploading", remote_key=key, last_error=None, bump=True)

        kept: dict[str, Any] = {"extra": row.extra, "etag": None}

        def checkpoint(state: dict[str, Any]) -> None:
            self._write(target, sha, extra={**(row.extra or {}), "resume": state})

        asset = job.asset
        sent = None
        if backend.caps.takes_sidecar:
            sent = read_local_sidecar(self.library_root, job.library_path, self.sidecar_naming)
            asset = replace(asset, sidecar=sent.data if sent is not None else None)

        def attempt() -> tuple[str, str]:
            with self._open(job, shared) as data:
                stored = backend.put(
                    key,
                    data,
                    digests=digests,
                    asset=asset,
                    resume=resume,
                    checkpoint=checkpoint,
                )
            extra = {k: v for k, v in (row.extra or {}).items() if k != "resume"}
            extra.update(stored.extra)
            kept.update(extra=extra or None, etag=stored.etag)
            if stored.server_checked and stored.size == digests.size:
                # The far end checked the bytes as it stored them: that is the verification.
                return stored.key, "checked by the server on upload"
            self._write(target, sha, state="verifying", remote_key=stored.key, etag=stored.etag)
            check = backend.verify(stored.key, digests)
            if not check.ok:
                raise IntegrityMismatch(
                    destination=target.name, key=stored.key, detail=check.detail
                )
            return stored.key, check.method

        stored_key, method = call_with_retries(
            attempt, self.policy, what=f"{target.name}: {job.library_path}", stop=self.stop
        )
        with self._lock:
            report.destinations[target.name].uploaded += 1
            report.destinations[target.name].bytes += job.asset.size
        if digests.sha1 is not None:
            # The SHA-1 of verified library bytes: an Immich source that lists this upload
            # back knows the content (`pipeline/checksum_stage.py`) and downloads nothing.
            with self.catalog.write() as db:
                record_sha1s(db, [(job.asset.sha256, digests.sha1)])
        self._verified(target, job, stored_key, method, report, **kept)
        if sent is not None and (kept["extra"] or {}).get("status") == "created":
            record_sent_sidecar(self.catalog, target.destination_id, sha, stored_key, sent)

    # -- reading the original --------------------------------------------------------------

    def _digests(self, job: SyncJob, shared: dict[str, Any], needs: set[str]) -> Digests:
        return asset_digests(self.library_root, job, shared, needs, self._lock)

    def _open(self, job: SyncJob, shared: dict[str, Any]) -> Any:
        return open_original(self.library_root, job, shared)


def _wait(future: Future[None], stop: threading.Event) -> None:
    while not future.done():
        if stop.is_set():
            raise KeyboardInterrupt
        try:
            future.result(timeout=0.5)
        except TimeoutError:
            continue
