"""After a sync's uploads: sidecar edits reach the kinds that hold metadata, not files (Immich).

Immich applies the sidecar sent with an upload (recorded here as that replica's sidecar, with
its SHA-256 and the library file's mtime, like a file kind's). A library sidecar that changed
since — a rating or keywords set in digiKam — is read (exiftool, only for the changed ones)
and its user fields are pushed as Immich's own (`destinations/immich_metadata.py`); the
catalog then records that sidecar as sent. An unchanged sidecar costs one stat and no call.
A failure is one line in the sync's report for that asset; the others go on.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from picpipe.catalog import sidecar_replicas as sq
from picpipe.destinations.base import Digests
from picpipe.destinations.immich_metadata import ImmichEdits
from picpipe.errors import DestinationUnavailable, PicpipeError
from picpipe.jobs.retry import call_with_retries
from picpipe.jobs.sync_sidecars import LocalSidecar, library_sidecar
from picpipe.pipeline.sidecar import read_sidecar

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.jobs.replicate import SyncRun
    from picpipe.jobs.sync_plan import SyncTarget
    from picpipe.jobs.sync_report import SyncReport
    from picpipe.pipeline.exiftool import ExifToolPool

log = logging.getLogger(__name__)


def read_local_sidecar(root: Path, library_path: str, naming: str) -> LocalSidecar | None:
    """The library sidecar of an original with its digests and mtime; None when there is
    none or it cannot be read (an upload goes on without it: the original is what counts)."""
    found = library_sidecar(root, library_path, naming)
    if found is None:
        return None
    try:
        mtime_ns = found.stat().st_mtime_ns
        data = found.read_bytes()
    except OSError:
        return None
    return LocalSidecar(data, Digests.of_bytes(data), mtime_ns)


def record_sent_sidecar(
    catalog: Catalog, destination_id: int, sha256: str, key: str, sent: LocalSidecar
) -> None:
    """The sidecar went with the upload that created ``key``: the server holds its fields."""
    with catalog.write() as db:
        sq.set_sidecar_replica(
            db,
            destination_id,
            sha256,
            remote_key=key,
            sidecar_sha256=sent.digests.sha256,
            size=sent.digests.size,
            local_mtime_ns=sent.mtime_ns,
        )


class EditsSync:
    """The edits pass of one sync over its targets that take sidecars with uploads."""

    def __init__(self, sync: SyncRun, naming: str, tools: ExifToolPool) -> None:
        self.sync = sync
        self.naming = naming
        self.tools = tools

    def run(self, targets: Sequence[SyncTarget], report: SyncReport) -> None:
        for target in targets:
            if target.backend.caps.takes_sidecar and target.down is None:
                self._target(target, report)

    def _target(self, target: SyncTarget, report: SyncReport) -> None:
        catalog = self.sync.catalog
        with catalog.session() as db:
            plans = list(sq.sidecar_plan(db, target.destination_id))
        for plan in plans:
            if self.sync.stop.is_set():
                return
            local = self._changed(plan)
            if local is None:
                continue
            if plan.sidecar_sha256 == local.digests.sha256:
                with catalog.write() as db:  # touched, not changed: remember the new mtime
                    sq.touch_mtime(db, target.destination_id, plan.sha256, local.mtime_ns)
                continue
            try:
                self._push(target, plan, local)
            except DestinationUnavailable as exc:
                self._fail(target, plan, report, exc.reason)
                return  # the server stopped answering: the next sync sends the rest
            except PicpipeError as exc:
                self._fail(target, plan, report, exc.reason)
                continue
            with self.sync._lock:
                report.edits_pushed[target.name] = report.edits_pushed.get(target.name, 0) + 1

    def _changed(self, plan: sq.SidecarPlan) -> LocalSidecar | None:
        found = library_sidecar(self.sync.library_root, plan.library_path, self.naming)
        if found is None:
            return None
        try:
            st = found.stat()
        except OSError:
            return None
        if plan.size == st.st_size and plan.local_mtime_ns == st.st_mtime_ns:
            return None  # untouched since it was sent: no read, no call
        return read_local_sidecar(self.sync.library_root, plan.library_path, self.naming)

    def _push(self, target: SyncTarget, plan: sq.SidecarPlan, local: LocalSidecar) -> None:
        path = library_sidecar(self.sync.library_root, plan.library_path, self.naming)
        assert path is not None
        user = read_sidecar(self.tools.get(), path).user
        edits = ImmichEdits.of(
            description=user.description,
            title=user.title,
            rating=user.rating,
            keywords=user.keywords,
        )
        catalog = self.sync.catalog
        with catalog.session() as db:
            previous = sq.pushed_tags(db, target.destination_id, plan.sha256)
        backend: Any = target.backend
        tags = call_with_retries(
            lambda: backend.push_edits(plan.replica_key, edits, previous),
            self.sync.policy,
            what=f"{target.name}: {plan.library_path} (edits)",
            stop=self.sync.stop,
        )
        with catalog.write() as db:
            sq.set_pushed_tags(db, target.destination_id, plan.sha256, list(tags))
            sq.set_sidecar_replica(
                db,
                target.destination_id,
                plan.sha256,
                remote_key=plan.replica_key,
                sidecar_sha256=local.digests.sha256,
                size=local.digests.size,
                local_mtime_ns=local.mtime_ns,
            )
        log.info("%s: edits of %s pushed", target.name, plan.library_path)

    def _fail(self, target: SyncTarget, plan: sq.SidecarPlan, report: SyncReport, why: str) -> None:
        with self.sync._lock:
            report.destinations[target.name].failed += 1
            report.failures.append((target.name, f"{plan.library_path} (edits)", why))
