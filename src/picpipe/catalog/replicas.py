"""Catalog reads and writes of destinations and replicas (the replication engine's queries).

A replica row moves pending → uploading → verifying → verified | failed. Only ``verified``
counts as a copy; the library's own original is one more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, select, update

from picpipe.catalog.models import Album, AlbumAsset, Asset, Destination, Replica, SourceFile
from picpipe.catalog.queries import utcnow
from picpipe.catalog.upsert import upsert

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

VERIFIED = "verified"
STATES = ("pending", "uploading", "verifying", "verified", "failed")


@dataclass(frozen=True, slots=True)
class PlannedAsset:
    """An asset one destination does not hold verified yet (or all, when re-verifying)."""

    sha256: str
    size: int
    kind: str
    mime_type: str | None
    taken_local: datetime
    taken_offset_min: int | None
    original_name: str
    library_path: str
    duration: float | None
    pair_id: str | None
    pair_kind: str | None
    replica_state: str | None  # None: no row yet
    remote_key: str | None
    extra: dict[str, Any] | None


def ensure_destination(db: Session, name: str, kind: str) -> int:
    """The id of the destination row for ``name`` (created on first use; kind kept current)."""
    row = db.scalar(select(Destination).where(Destination.name == name))
    if row is None:
        row = Destination(name=name, kind=kind, created_at=utcnow())
        db.add(row)
        db.flush()
    elif row.kind != kind:
        row.kind = kind
    return row.id


def destination_id(db: Session, name: str) -> int | None:
    """The id of destination ``name``, or None when no sync has used it yet."""
    found = db.scalar(select(Destination.id).where(Destination.name == name))
    return int(found) if found is not None else None


def plan_page(
    db: Session, destination_id: int, *, after: str = "", limit: int = 500, everything: bool = False
) -> list[PlannedAsset]:
    """Assets (in sha256 order, after ``after``) not verified at the destination.

    ``everything`` includes verified ones too (``sync --verify`` checks them again). A no-op
    sync is one indexed anti-join that returns nothing.
    """
    joined = and_(Replica.sha256 == Asset.sha256, Replica.destination_id == destination_id)
    # An index-only asset has no original of picpipe's own to send (`index_only_count`).
    query = (
        select(
            Asset.sha256,
            Asset.size,
            Asset.kind,
            Asset.mime_type,
            Asset.taken_local,
            Asset.taken_offset_min,
            Asset.original_name,
            Asset.library_path,
            Asset.duration,
            Asset.pair_id,
            Asset.pair_kind,
            Replica.state,
            Replica.remote_key,
            Replica.extra,
        )
        .outerjoin(Replica, joined)
        .where(Asset.sha256 > after, Asset.index_only.is_(False))
        .order_by(Asset.sha256)
        .limit(limit)
    )
    if not everything:
        query = query.where((Replica.id.is_(None)) | (Replica.state != VERIFIED))
    return [PlannedAsset(*row) for row in db.execute(query)]  # type: ignore[call-arg]


def first_provenance(db: Session, sha256s: Sequence[str]) -> dict[str, tuple[str, int]]:
    """sha256 → (relative path, source mtime_ns) of the first source file seen with it."""
    first = (
        select(func.min(SourceFile.id))
        .where(SourceFile.sha256.in_(sha256s))
        .group_by(SourceFile.sha256)
        .scalar_subquery()
    )
    rows = db.execute(
        select(SourceFile.sha256, SourceFile.ref, SourceFile.mtime_ns).where(
            SourceFile.id.in_(first)
        )
    )
    return {r[0]: (r[1], r[2]) for r in rows if r[0] is not None}


def album_names(db: Session, sha256s: Sequence[str]) -> dict[str, list[str]]:
    """sha256 → names of the albums it is in."""
    rows = db.execute(
        select(AlbumAsset.sha256, Album.name)
        .join(Album, Album.id == AlbumAsset.album_id)
        .where(AlbumAsset.sha256.in_(sha256s))
        .order_by(Album.name)
    )
    out: dict[str, list[str]] = {}
    for sha, name in rows:
        out.setdefault(sha, []).append(name)
    return out


def claimed_keys(db: Session, destination_id: int, keys: Sequence[str]) -> dict[str, str]:
    """remote key → the asset that holds it at the destination (for collision-safe names)."""
    if not keys:
        return {}
    rows = db.execute(
        select(Replica.remote_key, Replica.sha256).where(
            Replica.destination_id == destination_id, Replica.remote_key.in_(keys)
        )
    )
    return {r[0]: r[1] for r in rows if r[0] is not None}


def set_replica(db: Session, destination_id: int, sha256: str, **fields: Any) -> None:
    """Create or update the replica row of ``sha256`` at the destination (one statement:
    two runs writing the same row at once end with one row)."""
    fields["updated_at"] = utcnow()
    values = {"sha256": sha256, "destination_id": destination_id}
    values |= {"state": "pending", "attempts": 0} | fields
    upsert(db, Replica, values, conflict=["sha256", "destination_id"], update=fields)


def bump_attempts(db: Session, destination_id: int, sha256: str) -> None:
    db.execute(
        update(Replica)
        .where(Replica.sha256 == sha256, Replica.destination_id == destination_id)
        .values(attempts=Replica.attempts + 1)
    )


def unlinked_live_pairs(db: Session, destination_id: int) -> list[tuple[str, str, str]]:
    """(still sha256, still key, video key) of Live Photos whose halves are both verified at
    the destination and not linked there yet."""
    still, video = Asset.__table__.alias("still"), Asset.__table__.alias("video")
    rs, rv = Replica.__table__.alias("rs"), Replica.__table__.alias("rv")
    rows = db.execute(
        select(rs.c.sha256, rs.c.remote_key, rv.c.remote_key, rs.c.extra)
        .select_from(still)
        .join(video, and_(video.c.pair_id == still.c.pair_id, video.c.kind == "video"))
        .join(rs, and_(rs.c.sha256 == still.c.sha256, rs.c.destination_id == destination_id))
        .join(rv, and_(rv.c.sha256 == video.c.sha256, rv.c.destination_id == destination_id))
        .where(
            still.c.pair_kind == "live",
            still.c.kind != "video",
            rs.c.state == VERIFIED,
            rv.c.state == VERIFIED,
        )
    )
    return [(r[0], r[1], r[2]) for r in rows if not (r[3] or {}).get("linked_to")]


def mark_linked(db: Session, destination_id: int, links: Sequence[tuple[str, str]]) -> None:
    """Record that each (still sha256, video key) pair is linked at the destination."""
    for sha256, video_key in links:
        row = db.scalar(
            select(Replica).where(
                Replica.sha256 == sha256, Replica.destination_id == destination_id
            )
        )
        if row is not None:
            row.extra = {**(row.extra or {}), "linked_to": video_key}


def albums_to_assign(db: Session, destination_id: int) -> dict[str, list[tuple[str, str]]]:
    """Album name → (sha256, remote key) of verified replicas not yet put in that album."""
    rows = db.execute(
        select(Album.name, Replica.sha256, Replica.remote_key, Replica.extra)
        .join(AlbumAsset, AlbumAsset.album_id == Album.id)
        .join(
            Replica,
            and_(
                Replica.sha256 == AlbumAsset.sha256,
                Replica.destination_id == destination_id,
                Replica.state == VERIFIED,
            ),
        )
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for name, sha, key, extra in rows:
        if name not in (extra or {}).get("albums", []):
            out.setdefault(name, []).append((sha, key))
    return out


def mark_in_albums(db: Session, destination_id: int, assigned: dict[str, list[str]]) -> None:
    """Record album membership at the destination: album name → sha256s."""
    by_sha: dict[str, list[str]] = {}
    for name, shas in assigned.items():
        for sha in shas:
            by_sha.setdefault(sha, []).append(name)
    for sha, names in by_sha.items():
        row = db.scalar(
            select(Replica).where(Replica.sha256 == sha, Replica.destination_id == destination_id)
        )
        if row is not None:
            known = (row.extra or {}).get("albums", [])
            row.extra = {**(row.extra or {}), "albums": sorted({*known, *names})}


# -- reports -------------------------------------------------------------------------------


def replica_counts(db: Session) -> dict[str, dict[str, int]]:
    """Destination name → replica count per state (every state present, zeros included)."""
    out: dict[str, dict[str, int]] = {}
    for (name,) in db.execute(select(Destination.name).order_by(Destination.name)):
        out[name] = dict.fromkeys(STATES, 0)
    rows = db.execute(
        select(Destination.name, Replica.state, func.count())
        .join(Replica, Replica.destination_id == Destination.id)
        .group_by(Destination.name, Replica.state)
    )
    for name, state, count in rows:
        out.setdefault(name, dict.fromkeys(STATES, 0))[state] = int(count)
    return out


def index_only_count(db: Session) -> int:
    """Assets kept as an index only (`mode: index`): not in the library, not synced."""
    return int(db.scalar(select(func.count()).where(Asset.index_only.is_(True))) or 0)


def under_replicated(
    db: Session, target: int, *, destinations: Sequence[str] = (), limit: int | None = None
) -> tuple[int, list[tuple[str, str, int, bool]]]:
    """Assets with fewer than ``target`` verified copies (the library's own counts as one,
    an index-only asset has none: a source's copy is not picpipe's).

    Only replicas at ``destinations`` (the configured ones) count, when given. Returns the
    number of such assets and up to ``limit`` of them as (sha256, library path, copies, in
    the library).
    """
    counted = select(Replica.sha256, func.count().label("n")).where(Replica.state == VERIFIED)
    if destinations:
        counted = counted.join(Destination, Destination.id == Replica.destination_id).where(
            Destination.name.in_(destinations)
        )
    verified = counted.group_by(Replica.sha256).subquery()
    own = case((Asset.index_only.is_(True), 0), else_=1)
    copies = own + func.coalesce(verified.c.n, 0)
    base = (
        select(Asset.sha256, Asset.library_path, copies, Asset.index_only)
        .outerjoin(verified, verified.c.sha256 == Asset.sha256)
        .where(copies < target)
    )
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    listed = db.execute(base.order_by(Asset.taken_local, Asset.sha256).limit(limit))
    return int(total), [(r[0], r[1], int(r[2]), not r[3]) for r in listed]


def failed_replicas(
    db: Session, *, limit: int = 100
) -> Iterator[tuple[str, str, str | None, str | None]]:
    """(destination, sha256, library path, last error) of failed replicas, newest first."""
    rows = db.execute(
        select(Destination.name, Replica.sha256, Asset.library_path, Replica.last_error)
        .join(Destination, Destination.id == Replica.destination_id)
        .join(Asset, Asset.sha256 == Replica.sha256)
        .where(Replica.state == "failed")
        .order_by(Replica.updated_at.desc())
        .limit(limit)
    )
    for row in rows:
        yield row[0], row[1], row[2], row[3]
