"""Catalog reads and writes of sidecar replicas: which sidecar picpipe last wrote where."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, select

from picpipe.catalog.models import Asset, Destination, Replica, SidecarReplica
from picpipe.catalog.queries import utcnow
from picpipe.catalog.replicas import VERIFIED
from picpipe.catalog.upsert import upsert

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class SidecarPlan:
    """A verified replica and what picpipe last wrote as its sidecar there (None: nothing)."""

    sha256: str
    library_path: str
    replica_key: str
    sidecar_key: str | None
    sidecar_sha256: str | None
    size: int | None
    local_mtime_ns: int | None


def sidecar_plan(db: Session, destination_id: int, *, page: int = 1000) -> Iterator[SidecarPlan]:
    """Every verified replica of the destination with its sidecar row, in sha256 order."""
    after = ""
    while True:
        rows = db.execute(
            select(
                Asset.sha256,
                Asset.library_path,
                Replica.remote_key,
                SidecarReplica.remote_key,
                SidecarReplica.sidecar_sha256,
                SidecarReplica.size,
                SidecarReplica.local_mtime_ns,
            )
            .join(Replica, Replica.sha256 == Asset.sha256)
            .outerjoin(
                SidecarReplica,
                and_(
                    SidecarReplica.sha256 == Asset.sha256,
                    SidecarReplica.destination_id == destination_id,
                ),
            )
            .where(
                Replica.destination_id == destination_id,
                Replica.state == VERIFIED,
                Replica.remote_key.is_not(None),
                Asset.sha256 > after,
            )
            .order_by(Asset.sha256)
            .limit(page)
        ).all()
        if not rows:
            return
        for sha, path, key, skey, ssha, size, mtime in rows:
            yield SidecarPlan(sha, path, str(key), skey, ssha, size, mtime)
        after = rows[-1][0]


def set_sidecar_replica(
    db: Session,
    destination_id: int,
    sha256: str,
    *,
    remote_key: str,
    sidecar_sha256: str,
    size: int,
    local_mtime_ns: int | None,
) -> None:
    """Record the sidecar now verified at ``remote_key`` (one row per asset and destination)."""
    fields = {
        "remote_key": remote_key,
        "sidecar_sha256": sidecar_sha256,
        "size": size,
        "local_mtime_ns": local_mtime_ns,
        "verified_at": utcnow(),
    }
    upsert(
        db,
        SidecarReplica,
        {"destination_id": destination_id, "sha256": sha256, **fields},
        conflict=["destination_id", "sha256"],
        update=fields,
    )


def touch_mtime(db: Session, destination_id: int, sha256: str, mtime_ns: int) -> None:
    """The library sidecar was touched but holds what is replicated: remember its new mtime."""
    row = db.get(SidecarReplica, (destination_id, sha256))
    if row is not None:
        row.local_mtime_ns = mtime_ns


def sidecar_keys(db: Session, sha256: str) -> dict[str, str]:
    """Destination name → the key of the sidecar picpipe last wrote beside ``sha256`` there."""
    rows = db.execute(
        select(Destination.name, SidecarReplica.remote_key)
        .join(Destination, Destination.id == SidecarReplica.destination_id)
        .where(SidecarReplica.sha256 == sha256)
    ).all()
    return {str(name): str(key) for name, key in rows}


def _replica(db: Session, destination_id: int, sha256: str) -> Replica | None:
    return db.scalars(
        select(Replica).where(Replica.destination_id == destination_id, Replica.sha256 == sha256)
    ).first()


def pushed_tags(db: Session, destination_id: int, sha256: str) -> list[str]:
    """The tags picpipe put on the asset's replica at a server that holds tags (Immich)."""
    row = _replica(db, destination_id, sha256)
    tags = (row.extra or {}).get("tags") if row is not None else None
    return [str(t) for t in tags] if isinstance(tags, list) else []


def set_pushed_tags(db: Session, destination_id: int, sha256: str, tags: list[str]) -> None:
    row = _replica(db, destination_id, sha256)
    if row is not None:
        row.extra = {**(row.extra or {}), "tags": tags}
