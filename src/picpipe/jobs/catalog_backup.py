"""The catalog's snapshot after each sync, to every destination that holds files.

``picpipe-catalog/catalog-<UTC timestamp>.sqlite.gz`` (or ``.json.gz`` from PostgreSQL) and
``picpipe-catalog/latest.json``, the pointer ``restore-catalog`` reads: the snapshot's key, size
and SHA-256, the catalog and library ids and the asset count. The snapshot is uploaded and
verified before the pointer moves; the last ``replicas.catalog_snapshots`` are kept (kinds
without `Removing` keep them all).
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from picpipe import __version__
from picpipe.catalog.library_info import catalog_fact
from picpipe.catalog.models import CatalogInfo
from picpipe.catalog.snapshot import export_snapshot
from picpipe.destinations.base import SNAPSHOT_PREFIX, Digests, plain_file_ref
from picpipe.errors import DestinationError, IntegrityMismatch, PicpipeError, SnapshotDamaged
from picpipe.hashing import digest_stream
from picpipe.jobs.retry import call_with_retries

if TYPE_CHECKING:
    import threading

    from picpipe.catalog.db import Catalog
    from picpipe.destinations.base import Destination
    from picpipe.jobs.retry import RetryPolicy
    from picpipe.jobs.sync_report import SyncReport

log = logging.getLogger(__name__)

LATEST = f"{SNAPSHOT_PREFIX}latest.json"
FACT = "snapshot_at:"  # catalog_info key + destination name: when its last snapshot was written


@dataclass(frozen=True, slots=True)
class Pointer:
    """``latest.json``: where the newest snapshot is and what it holds."""

    key: str
    size: int
    sha256: str
    format: str
    revision: str
    catalog_id: str | None
    library_id: str | None
    assets: int
    created: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.key,
            "size": self.size,
            "sha256": self.sha256,
            "format": self.format,
            "revision": self.revision,
            "catalog_id": self.catalog_id,
            "library_id": self.library_id,
            "assets": self.assets,
            "created": self.created,
            "written_by": f"picpipe {__version__}",
        }

    @classmethod
    def parse(cls, data: bytes) -> Pointer:
        raw = json.loads(data)
        return cls(
            str(raw["snapshot"]),
            int(raw["size"]),
            str(raw["sha256"]),
            str(raw["format"]),
            str(raw["revision"]),
            raw.get("catalog_id"),
            raw.get("library_id"),
            int(raw.get("assets", 0)),
            str(raw.get("created", "")),
        )


def holds_files(backend: Destination) -> bool:
    """Kinds that store files under picpipe's keys (not Immich, which names its own assets)."""
    return not backend.caps.keyed_by_server


def snapshot_catalog(
    catalog: Catalog,
    backends: dict[str, Destination],
    *,
    keep: int,
    policy: RetryPolicy,
    report: SyncReport,
    stop: threading.Event | None = None,
    workdir: Path | None = None,
) -> None:
    """Export the catalog once and upload it to every file destination not found down.

    ``workdir`` holds the export while it is uploaded (picpipe's home: a catalog of gigabytes
    may not fit a small /tmp).

    A destination that fails is one failure line of the report; the others go on.
    """
    targets = {
        name: b
        for name, b in backends.items()
        if holds_files(b)
        and not report.destinations.get(name, _Up()).unreachable
        and _wanted(catalog, name, report)
    }
    if keep <= 0 or not targets:
        return
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".picpipe-snapshot-", dir=workdir) as folder:
        packed, facts = export_snapshot(catalog, Path(folder))
        with open(packed, "rb") as raw:
            found, size, _ = digest_stream(raw, ("sha256", "md5", "sha1"))
        digests = Digests(size, found["sha256"], found["md5"], found["sha1"])
        now = datetime.now(UTC)
        suffix = "sqlite.gz" if facts.format == "sqlite" else "json.gz"
        key = f"{SNAPSHOT_PREFIX}catalog-{now:%Y%m%dT%H%M%SZ}.{suffix}"
        pointer = Pointer(
            key,
            size,
            digests.sha256,
            facts.format,
            facts.revision,
            facts.catalog_id,
            facts.library_id,
            facts.assets,
            now.replace(microsecond=0).isoformat(),
        )
        for name, backend in targets.items():
            try:
                _upload(backend, packed, key, digests, pointer, policy, stop)
                _prune(backend, keep)
            except PicpipeError as exc:
                report.failures.append((name, "(catalog snapshot)", exc.reason))
                tally = report.destinations.get(name)
                if tally is not None:
                    tally.failed += 1
                continue
            report.snapshots[name] = key
            with catalog.write() as db:
                db.merge(CatalogInfo(key=f"{FACT}{name}", value=pointer.created))


def _wanted(catalog: Catalog, name: str, report: SyncReport) -> bool:
    """A snapshot when this sync wrote something there, or none was ever written there: a
    sync with everything in place stays without remote calls."""
    tally = report.destinations.get(name)
    wrote = report.sidecars_uploaded.get(name, 0) + sum(
        1 for d, _k, _w in report.sidecar_versions if d == name
    )
    if tally is not None:
        wrote += tally.uploaded + tally.present + tally.repaired
    if wrote:
        return True
    with catalog.session() as db:
        return catalog_fact(db, f"{FACT}{name}") is None


class _Up:
    unreachable: str | None = None


def _upload(
    backend: Destination,
    packed: Path,
    key: str,
    digests: Digests,
    pointer: Pointer,
    policy: RetryPolicy,
    stop: threading.Event | None,
) -> None:
    def put(target: str, data_of: Any, sums: Digests, mime: str) -> None:
        ref = plain_file_ref(target.rpartition("/")[2], sums, mime)

        def attempt() -> None:
            with data_of() as data:
                stored = backend.put(target, data, digests=sums, asset=ref)
            if stored.server_checked and stored.size == sums.size:
                return
            check = backend.verify(target, sums)
            if not check.ok:
                raise IntegrityMismatch(destination=backend.name, key=target, detail=check.detail)

        call_with_retries(attempt, policy, what=f"{backend.name}: {target}", stop=stop)

    put(key, partial(open, packed, "rb"), digests, "application/gzip")
    text = (json.dumps(pointer.as_dict(), indent=2) + "\n").encode()
    # Only after the snapshot itself is verified does the pointer move to it.
    put(LATEST, lambda: io.BytesIO(text), Digests.of_bytes(text), "application/json")


def _prune(backend: Destination, keep: int) -> None:
    remover: Any = backend
    if not callable(getattr(remover, "remove_snapshot", None)):
        return
    names = sorted(
        o.key
        for o in backend.list(SNAPSHOT_PREFIX)
        if o.key.rpartition("/")[2].startswith("catalog-")
    )
    for old in names[:-keep]:
        try:
            remover.remove_snapshot(old)
        except DestinationError as exc:
            # A credential may rightly lack delete (an Azure SAS): the snapshot is safe, the
            # old ones stay; one line, not a failed sync.
            log.warning("%s: old catalog snapshots are kept (%s)", backend.name, exc.reason)
            return


def read_pointer(backend: Destination) -> Pointer:
    """The destination's ``latest.json``; IntegrityMismatch "missing" when it has none."""
    try:
        return Pointer.parse(b"".join(backend.read(LATEST)))
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityMismatch(
            destination=backend.name, key=LATEST, detail="not a picpipe snapshot pointer"
        ) from exc


def fetch_snapshot(backend: Destination, pointer: Pointer, target: Path) -> None:
    """Download the snapshot ``pointer`` names to ``target``, its SHA-256 checked."""
    with open(target, "wb") as out:
        for chunk in backend.read(pointer.key):
            out.write(chunk)
    with open(target, "rb") as raw:
        sums, size, _ = digest_stream(raw, ("sha256",))
    if size != pointer.size or sums["sha256"] != pointer.sha256:
        raise SnapshotDamaged(
            destination=backend.name, key=pointer.key, detail="its sha256 differs"
        )
