"""The dashboard's figures: aggregate queries over the catalog, as named functions over a Session.

Every function here is one or two aggregate queries (GROUP BY, COUNT, LIMIT); none loads a
row per asset into Python, so the whole status stays cheap at 100,000 assets. Times are the
catalog's naive UTC instants, returned as ISO strings with a ``Z``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Text, and_, cast, func, or_, select

from picpipe.catalog.models import (
    Asset,
    Destination,
    ImportSession,
    Replica,
    SessionFailure,
    Source,
    SourceFile,
)
from picpipe.catalog.runs import lease_now

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session

# Replica states that are neither verified nor failed: the copy is on its way.
IN_PROGRESS_STATES = ("pending", "uploading", "verifying")


def iso(moment: datetime | None) -> str | None:
    """A catalog instant (naive UTC) as ISO 8601 with ``Z``; None stays None."""
    return None if moment is None else moment.isoformat() + "Z"


# -- totals --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Totals:
    """What the library holds: assets by kind, their bytes, thumbnail states."""

    assets: int
    photos: int
    raw: int
    videos: int
    bytes: int
    thumbs_pending: int
    thumbs_failed: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def totals(db: Session) -> Totals:
    """One GROUP BY over the asset table (kind × thumbnail state)."""
    by_kind: dict[str, int] = {}
    by_thumbs: dict[str, int] = {}
    size = 0
    rows = db.execute(
        select(
            Asset.kind, Asset.thumbs_state, func.count(), func.coalesce(func.sum(Asset.size), 0)
        ).group_by(Asset.kind, Asset.thumbs_state)
    )
    for kind, thumbs_state, n, total in rows:
        by_kind[kind] = by_kind.get(kind, 0) + int(n)
        by_thumbs[thumbs_state] = by_thumbs.get(thumbs_state, 0) + int(n)
        size += int(total)
    return Totals(
        assets=sum(by_kind.values()),
        photos=by_kind.get("photo", 0),
        raw=by_kind.get("raw", 0),
        videos=by_kind.get("video", 0),
        bytes=size,
        thumbs_pending=by_thumbs.get("pending", 0),
        thumbs_failed=by_thumbs.get("failed", 0),
    )


# -- sessions ------------------------------------------------------------------------------


def session_row(run: ImportSession) -> dict[str, Any]:
    """One session as the dashboard shows it; ``done`` counts every file with an outcome."""
    done = run.new + run.duplicate + run.unchanged + run.failed + run.skipped
    return {
        "id": run.id,
        "kind": run.kind,
        "device": run.device,
        "status": run.status,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "seen": run.seen,
        "new": run.new,
        "duplicate": run.duplicate,
        "unchanged": run.unchanged,
        "failed": run.failed,
        "skipped": run.skipped,
        "done": done,
        "bytes": run.bytes,
        "pid": run.pid,
        "host": run.host,
        "error": run.error,
        # The run's own progress from its event stream (stage, done, total), stored by its
        # heartbeat; a running run whose lease lapsed is stale (killed, or its machine gone).
        "progress": run.progress,
        "heartbeat_at": iso(run.heartbeat_at),
        "stale": run.status == "running"
        and (run.lease_until is None or run.lease_until < lease_now()),
    }


def running_sessions(db: Session) -> list[dict[str, Any]]:
    """Sessions marked running, oldest first.

    The import writes its counts to the session row with every recorder batch (at least once
    a second while files finish), so these counts are live; ``seen`` grows while the source
    is still being listed.
    """
    runs = db.scalars(
        select(ImportSession).where(ImportSession.status == "running").order_by(ImportSession.id)
    )
    return [session_row(run) for run in runs]


def recent_sessions(db: Session, limit: int = 10) -> list[dict[str, Any]]:
    """The newest ``limit`` sessions, newest first."""
    runs = db.scalars(select(ImportSession).order_by(ImportSession.id.desc()).limit(limit))
    return [session_row(run) for run in runs]


# -- failures ------------------------------------------------------------------------------


def failed_file_count(db: Session) -> int:
    """Source files whose last attempt failed and that are still in their source."""
    count = db.scalar(
        select(func.count())
        .select_from(SourceFile)
        .where(SourceFile.state == "failed", SourceFile.gone.is_(False))
    )
    return int(count or 0)


def failed_files(db: Session, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` failed source files with their reasons, newest first."""
    rows = db.execute(
        select(
            Source.name,
            SourceFile.ref,
            SourceFile.error,
            SourceFile.retryable,
            SourceFile.last_seen,
            SourceFile.session_id,
        )
        .join(Source, Source.id == SourceFile.source_id)
        .where(SourceFile.state == "failed", SourceFile.gone.is_(False))
        .order_by(SourceFile.last_seen.desc(), SourceFile.id.desc())
        .limit(limit)
    )
    return [
        {
            "source": name,
            "path": ref,
            "reason": _reason(error, f"{name}:{ref}: "),
            "retryable": bool(retryable),
            "last_seen": iso(last_seen),
            "session_id": session_id,
        }
        for name, ref, error, retryable, last_seen, session_id in rows
    ]


def _reason(error: str | None, prefix: str) -> str:
    # The stored message starts with "<source>:<path>: ", which the row shows already.
    if not error:
        return "unknown error"
    return error[len(prefix) :] if error.startswith(prefix) else error


def session_problems(db: Session, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` failures recorded by sessions (files and listing problems alike)."""
    rows = db.execute(
        select(
            SessionFailure.session_id,
            SessionFailure.path,
            SessionFailure.reason,
            ImportSession.kind,
            ImportSession.started_at,
        )
        .join(ImportSession, ImportSession.id == SessionFailure.session_id)
        .order_by(SessionFailure.id.desc())
        .limit(limit)
    )
    return [
        {
            "session_id": session_id,
            "path": path,
            "reason": reason,
            "kind": kind,
            "started_at": iso(started_at),
        }
        for session_id, path, reason, kind, started_at in rows
    ]


def thumbnail_failures(db: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Assets whose thumbnails could not be made, with the reason (original is kept)."""
    rows = db.execute(
        select(Asset.sha256, Asset.original_name, Asset.thumbs_error)
        .where(Asset.thumbs_state == "failed")
        .order_by(Asset.imported_at.desc(), Asset.sha256)
        .limit(limit)
    )
    return [
        {"sha256": sha, "name": name, "reason": error or "unknown error"}
        for sha, name, error in rows
    ]


def kept_with_problems(
    db: Session, limit: int = 20, *, session_id: int | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Assets kept in the library with a recorded problem (a truncated image, bytes of kind
    ``unknown``, no thumbnail): how many, and the newest ``limit`` with their problems.

    ``session_id`` narrows both to the assets one import session added.
    """
    # ``problems`` holds JSON null when there were none (SQLAlchemy's JSON default).
    noted = and_(Asset.problems.is_not(None), cast(Asset.problems, Text).not_in(("null", "[]")))
    where = or_(noted, Asset.kind == "unknown", Asset.thumbs_state == "failed")
    if session_id is not None:
        where = and_(where, Asset.session_id == session_id)
    count = int(db.scalar(select(func.count()).select_from(Asset).where(where)) or 0)
    rows = db.execute(
        select(Asset.sha256, Asset.original_name, Asset.kind, Asset.problems, Asset.thumbs_error)
        .where(where)
        .order_by(Asset.imported_at.desc(), Asset.sha256)
        .limit(limit)
    )
    items = []
    for sha, name, kind, problems, thumbs_error in rows:
        listed = list(problems or [])
        if thumbs_error and not listed:
            listed.append(f"no thumbnail: {thumbs_error}")
        items.append({"sha256": sha, "name": name, "kind": kind, "problems": listed})
    return count, items


# -- replication ---------------------------------------------------------------------------


def copies_histogram(db: Session, assets: int) -> dict[int, int]:
    """Number of assets per count of copies: the library's own plus each verified replica
    (an index-only asset has no library copy: its count is its replicas alone).

    ``assets`` is the library's asset count; those without a verified replica have one copy.
    One scan of the verified replicas, grouped per asset and then per count (no join with
    the asset table: every replica row points at an asset); index-only assets are few and
    counted apart.
    """
    per_asset = (
        select(Replica.sha256.label("sha256"), func.count().label("n"))
        .where(Replica.state == "verified")
        .group_by(Replica.sha256)
        .subquery()
    )
    rows = db.execute(select(per_asset.c.n, func.count()).group_by(per_asset.c.n))
    histogram = {1 + int(n): int(count) for n, count in rows}
    replicated = sum(histogram.values())
    if assets > replicated:
        histogram[1] = assets - replicated
    replicas = func.coalesce(per_asset.c.n, 0)
    index_only = db.execute(
        select(replicas, func.count())
        .select_from(Asset)
        .outerjoin(per_asset, per_asset.c.sha256 == Asset.sha256)
        .where(Asset.index_only.is_(True))
        .group_by(replicas)
    )
    for n, count in index_only:
        histogram[1 + int(n)] -= int(count)
        histogram[int(n)] = histogram.get(int(n), 0) + int(count)
    return {c: n for c, n in sorted(histogram.items()) if n}


def index_only_assets(db: Session) -> int:
    """Assets kept as an index only (`mode: index`): their originals are not in the library."""
    return int(db.scalar(select(func.count()).where(Asset.index_only.is_(True))) or 0)


def under_replicated(histogram: dict[int, int], target: int) -> int:
    """Assets with fewer than ``target`` copies, from ``copies_histogram``."""
    return sum(n for copies, n in histogram.items() if copies < target)


def destination_counts(db: Session, assets: int) -> list[dict[str, Any]]:
    """Per destination known to the catalog: verified, in progress, failed, not yet queued.

    ``assets`` is the library's asset count (``missing`` = assets without a replica row there).
    Grouped over the (destination, state) index; names are joined in Python (a few rows).
    """
    out: dict[int, dict[str, Any]] = {
        dest_id: {"name": name, "kind": kind, "verified": 0, "pending": 0, "failed": 0}
        for dest_id, name, kind in db.execute(
            select(Destination.id, Destination.name, Destination.kind).order_by(Destination.name)
        )
    }
    rows = db.execute(
        select(Replica.destination_id, Replica.state, func.count()).group_by(
            Replica.destination_id, Replica.state
        )
    )
    for dest_id, state, n in rows:
        entry = out.get(dest_id)
        if entry is None:
            continue
        if state == "verified":
            entry["verified"] += int(n)
        elif state == "failed":
            entry["failed"] += int(n)
        elif state in IN_PROGRESS_STATES:
            entry["pending"] += int(n)
    for entry in out.values():
        rows_there = entry["verified"] + entry["pending"] + entry["failed"]
        entry["missing"] = max(assets - rows_there, 0)
    return list(out.values())


# -- change detection ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChangeMarker:
    """Cheap facts that change whenever the status does (see ``change_marker``).

    ``sessions`` changes when a session starts or ends; ``progress`` with every count a
    running session writes; ``failures`` and ``replicas`` when rows are added.
    """

    sessions: tuple[tuple[int, str], ...]
    progress: tuple[tuple[int, ...], ...]
    failures: int | None
    replicas: int | None


def change_marker(db: Session) -> ChangeMarker:
    """The current ``ChangeMarker``: primary-key maxima and the few newest session rows.

    Index lookups only, so a live view can ask every second and recompute the expensive
    figures only when something moved.
    """
    newest = db.execute(
        select(
            ImportSession.id,
            ImportSession.status,
            ImportSession.seen,
            ImportSession.new,
            ImportSession.duplicate,
            ImportSession.unchanged,
            ImportSession.failed,
            ImportSession.bytes,
            ImportSession.skipped,
            ImportSession.heartbeat_at,
        )
        .order_by(ImportSession.id.desc())
        .limit(5)
    ).all()
    running = db.execute(
        select(ImportSession.id, ImportSession.status).where(ImportSession.status == "running")
    ).all()
    sessions = {(int(r[0]), str(r[1])) for r in newest}
    sessions |= {(int(r[0]), str(r[1])) for r in running}
    return ChangeMarker(
        sessions=tuple(sorted(sessions)),
        # The heartbeat moves too: a run's progress between two recorder batches.
        progress=tuple((*(int(v) for v in (r[0], *r[2:9])), _seconds(r[9])) for r in newest),
        failures=db.scalar(select(func.max(SessionFailure.id))),
        replicas=db.scalar(select(func.max(Replica.id))),
    )


def _seconds(value: datetime | None) -> int:
    return int(value.timestamp()) if value is not None else 0
