"""After a sync's uploads: each verified replica gets the library's XMP sidecar beside it.

The remote sidecar is ``<original's key>.xmp`` (the name digiKam, darktable and Immich look for
first; the library's ``<sha256>.xmp`` form would give a RAW and its JPEG one name there). A
sidecar is uploaded when it is new or its content changed since picpipe last wrote it; the
catalog keeps the SHA-256 of what was written (`catalog/sidecar_replicas.py`). Before replacing a
remote sidecar its current bytes are re-read: when they are not what picpipe wrote, someone
edited it at the destination, and the new version goes to ``<key>.picpipe-<sha8>.xmp`` while
their file is kept. Each upload is verified like an original (the kind's own ``verify``).
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from picpipe.catalog import sidecar_replicas as sq
from picpipe.destinations.base import Digests, plain_file_ref
from picpipe.errors import DestinationUnavailable, IntegrityMismatch, PicpipeError
from picpipe.jobs.retry import call_with_retries
from picpipe.library.layout import sidecar_ext_path, sidecar_path, written_sidecar_paths

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import Future
    from pathlib import Path

    from picpipe.destinations.base import Destination
    from picpipe.jobs.replicate import SyncRun
    from picpipe.jobs.sync_plan import SyncTarget
    from picpipe.jobs.sync_report import SyncReport

log = logging.getLogger(__name__)

XMP_MIME = "application/rdf+xml"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LocalSidecar:
    data: bytes
    digests: Digests
    mtime_ns: int


def remote_sidecar_key(replica_key: str) -> str:
    return f"{replica_key}.xmp"


def version_key(replica_key: str, sidecar_sha256: str) -> str:
    """Where a new version goes when the usual name holds someone else's edit."""
    return f"{replica_key}.picpipe-{sidecar_sha256[:8]}.xmp"


def library_sidecar(root: Path, library_path: str, naming: str) -> Path | None:
    """The library's sidecar of an original: the configured name first, then the other one."""
    names = dict.fromkeys(
        (
            *written_sidecar_paths(library_path, naming),
            sidecar_path(library_path),
            sidecar_ext_path(library_path),
        )
    )
    for name in names:
        path = root / name
        if path.is_file():
            return path
    return None


class SidecarSync:
    """The sidecar pass of one sync over its targets (kinds that hold files only)."""

    def __init__(self, sync: SyncRun, naming: str) -> None:
        self.catalog = sync.catalog
        self.root = sync.library_root
        self.naming = naming
        self.policy = sync.policy
        self.verify = sync.verify
        self.stop = sync.stop
        self.lock = sync._lock
        self.concurrency = sync.concurrency

    def run(self, targets: Sequence[SyncTarget], report: SyncReport) -> None:
        for target in targets:
            if target.backend.caps.keyed_by_server or target.down is not None:
                continue  # Immich takes metadata through its API; a down one is reported
            self._target(target, report)

    def _target(self, target: SyncTarget, report: SyncReport) -> None:
        """Stat every library sidecar here; the changed ones go to the target's upload pool."""
        with self.catalog.session() as db:
            plans = list(sq.sidecar_plan(db, target.destination_id))
        slots = threading.BoundedSemaphore(2 * max(1, self.concurrency.get(target.name, 4)))
        pending: list[Future[None]] = []
        gone: list[str] = []  # set once the destination stopped answering: submit no more
        for plan in plans:
            if self.stop.is_set() or gone:
                break
            try:
                local = self._changed(plan)
            except OSError as exc:
                self._fail(target, plan, report, f"cannot read the sidecar ({exc.strerror})")
                continue
            if local is None:
                continue
            slots.acquire()
            pending.append(target.pool.submit(self._send, target, plan, local, report, slots, gone))
        for future in pending:
            future.result()

    def _send(
        self,
        target: SyncTarget,
        plan: sq.SidecarPlan,
        local: LocalSidecar,
        report: SyncReport,
        slots: threading.BoundedSemaphore,
        gone: list[str],
    ) -> None:
        try:
            if not gone and not self.stop.is_set():
                self._one(target, plan, local, report)
        except DestinationUnavailable as exc:
            gone.append(exc.reason)
            self._fail(target, plan, report, exc.reason)
        except PicpipeError as exc:
            self._fail(target, plan, report, exc.reason)
        finally:
            slots.release()

    def _fail(self, target: SyncTarget, plan: sq.SidecarPlan, report: SyncReport, why: str) -> None:
        with self.lock:
            report.destinations[target.name].failed += 1
            report.failures.append((target.name, f"{plan.library_path} (sidecar)", why))

    def _changed(self, plan: sq.SidecarPlan) -> LocalSidecar | None:
        """The library sidecar when it may differ from what was replicated (None: it does not,
        or there is none: a lost sidecar is `picpipe repair`'s to restore)."""
        found = library_sidecar(self.root, plan.library_path, self.naming)
        if found is None:
            return None
        st = found.stat()
        if (
            not self.verify
            and plan.sidecar_sha256 is not None
            and plan.size == st.st_size
            and plan.local_mtime_ns == st.st_mtime_ns
        ):
            return None  # untouched since it was replicated: no read, no remote call
        data = found.read_bytes()
        return LocalSidecar(data, Digests.of_bytes(data), st.st_mtime_ns)

    def _one(
        self, target: SyncTarget, plan: sq.SidecarPlan, local: LocalSidecar, report: SyncReport
    ) -> None:
        if (
            plan.sidecar_sha256 == local.digests.sha256
            and plan.sidecar_key is not None
            and (not self.verify or self._holds(target, plan.sidecar_key, local.digests))
        ):
            # Touched (a metadata pass rewrote it the same), not changed: nothing to send.
            with self.catalog.write() as db:
                sq.touch_mtime(db, target.destination_id, plan.sha256, local.mtime_ns)
            return
        key, upload, kept = self._key_to_write(target, plan, local)
        if upload:
            self._upload(target, key, local)
        self._record(target, plan, key, local)
        with self.lock:
            if upload:
                report.sidecars_uploaded[target.name] = (
                    report.sidecars_uploaded.get(target.name, 0) + 1
                )
            if kept is not None:
                report.sidecar_versions.append((target.name, kept, key))

    def _key_to_write(
        self, target: SyncTarget, plan: sq.SidecarPlan, local: LocalSidecar
    ) -> tuple[str, bool, str | None]:
        """(key, whether to upload, the key of someone's edit that was kept instead).

        A key is ours to replace when nothing is there or it holds exactly what picpipe last
        wrote there; anything else is someone's edit and is kept.
        """
        backend = target.backend
        ours = None
        if plan.sidecar_sha256 is not None and plan.size is not None:
            ours = Digests(plan.size, plan.sidecar_sha256)
        base = remote_sidecar_key(plan.replica_key)
        first = plan.sidecar_key or base
        kept: str | None = None
        for key in dict.fromkeys(
            [first, base, version_key(plan.replica_key, local.digests.sha256)]
        ):
            if (
                _listed_absent(target, key)
                or self._call(target, partial(backend.stat, key)) is None
            ):
                return key, True, kept
            if self._holds(target, key, local.digests):
                return key, False, kept
            if ours is not None and key == plan.sidecar_key and self._holds(target, key, ours):
                return key, True, kept  # exactly what picpipe wrote last: replace it
            if kept is None:
                kept = key
                log.warning(
                    "%s: %s was changed at the destination; keeping it, the new version goes "
                    "under another name",
                    target.name,
                    key,
                )
        raise IntegrityMismatch(
            destination=target.name, key=base, detail="the sidecar names are taken by other files"
        )

    def _holds(self, target: SyncTarget, key: str, digests: Digests) -> bool:
        backend = target.backend
        return self._call(target, lambda: backend.verify(key, digests, deep=True)).ok

    def _upload(self, target: SyncTarget, key: str, local: LocalSidecar) -> None:
        backend: Destination = target.backend
        ref = plain_file_ref(key.rpartition("/")[2], local.digests, XMP_MIME)

        def attempt() -> None:
            stored = backend.put(key, io.BytesIO(local.data), digests=local.digests, asset=ref)
            if stored.server_checked and stored.size == local.digests.size:
                return
            check = backend.verify(key, local.digests)
            if not check.ok:
                raise IntegrityMismatch(destination=target.name, key=key, detail=check.detail)

        call_with_retries(attempt, self.policy, what=f"{target.name}: {key}", stop=self.stop)

    def _record(
        self, target: SyncTarget, plan: sq.SidecarPlan, key: str, local: LocalSidecar
    ) -> None:
        with self.catalog.write() as db:
            sq.set_sidecar_replica(
                db,
                target.destination_id,
                plan.sha256,
                remote_key=key,
                sidecar_sha256=local.digests.sha256,
                size=local.digests.size,
                local_mtime_ns=local.mtime_ns,
            )

    def _call(self, target: SyncTarget, call: Callable[[], T]) -> T:
        return call_with_retries(call, self.policy, what=f"{target.name}: sidecar", stop=self.stop)


def _listed_absent(target: SyncTarget, key: str) -> bool:
    """The run's listing of the destination (content-addressed keys) shows nothing at ``key``:
    no stat needed. (Keys under it that picpipe writes during the run are its own.)"""
    listed = target.listed
    return listed is not None and key.startswith(target.listed_root) and key not in listed
