"""Every catalog read and write the rest of picpipe needs, as named functions over a Session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update

from picpipe.catalog.models import (
    Asset,
    ImportSession,
    SessionFailure,
    Source,
    SourceFile,
    SourceFolder,
)
from picpipe.catalog.upsert import insert_returning_new, upsert

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.orm import Session


def utcnow() -> datetime:
    """Naive UTC now, to the second: the catalog stores UTC instants without a zone."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


# -- sources -------------------------------------------------------------------------------


def ensure_source(db: Session, *, name: str, kind: str, location: str) -> Source:
    """The source row called ``name``, created on first use; its location is kept current."""
    source = db.scalar(select(Source).where(Source.name == name))
    if source is None:
        source = Source(name=name, kind=kind, location=location, created_at=utcnow())
        db.add(source)
        db.flush()
    elif source.location != location or source.kind != kind:
        source.location, source.kind = location, kind
    return source


@dataclass(frozen=True, slots=True)
class KnownFile:
    """What the catalog remembers of one source file; enough to call it unchanged."""

    id: int
    size: int
    mtime_ns: int
    state: str
    retryable: bool
    gone: bool
    ctime_ns: int | None = None


def folder_digests(db: Session, source_id: int) -> dict[str, str]:
    """Folder → digest of its files as last settled (see ``pipeline/scan.py``)."""
    rows = db.execute(
        select(SourceFolder.path, SourceFolder.digest).where(SourceFolder.source_id == source_id)
    )
    return {r[0]: r[1] for r in rows}


def folder_skipped(db: Session, source_id: int) -> dict[str, int]:
    """Folder → how many of its files were skipped when it last settled (folders with any)."""
    rows = db.execute(
        select(SourceFolder.path, SourceFolder.skipped).where(
            SourceFolder.source_id == source_id, SourceFolder.skipped > 0
        )
    )
    return {r[0]: int(r[1]) for r in rows}


def folder_files(db: Session, source_id: int, folder: str) -> dict[str, KnownFile]:
    """Every file the catalog knows in one folder of one source, keyed by ref."""
    rows = db.execute(
        select(
            SourceFile.ref,
            SourceFile.id,
            SourceFile.size,
            SourceFile.mtime_ns,
            SourceFile.state,
            SourceFile.retryable,
            SourceFile.gone,
            SourceFile.ctime_ns,
        ).where(SourceFile.source_id == source_id, SourceFile.folder == folder)
    )
    return {r[0]: KnownFile(r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]), r[7]) for r in rows}


def save_folder_digests(
    db: Session,
    source_id: int,
    digests: dict[str, str],
    counts: dict[str, int],
    skipped: dict[str, int] | None = None,
) -> None:
    """Store the digests of folders that settled (replacing older ones), with their file
    counts and how many of those files were skipped."""
    skipped = skipped or {}
    paths = list(digests)
    forget_folders(db, source_id, paths)
    if paths:
        db.execute(
            insert(SourceFolder),
            [
                {
                    "source_id": source_id,
                    "path": p,
                    "digest": digests[p],
                    "files": counts.get(p, 0),
                    "skipped": skipped.get(p, 0),
                }
                for p in paths
            ],
        )


def forget_folders(db: Session, source_id: int, paths: Sequence[str]) -> None:
    for start in range(0, len(paths), 500):
        chunk = paths[start : start + 500]
        db.execute(
            delete(SourceFolder).where(
                SourceFolder.source_id == source_id, SourceFolder.path.in_(chunk)
            )
        )


def mark_folders_gone(db: Session, source_id: int, folders: Sequence[str]) -> None:
    """Every file of folders that are no longer there is gone (kept in the catalog)."""
    for start in range(0, len(folders), 500):
        chunk = folders[start : start + 500]
        db.execute(
            update(SourceFile)
            .where(SourceFile.source_id == source_id, SourceFile.folder.in_(chunk))
            .values(gone=True)
        )


def mark_gone(db: Session, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.execute(update(SourceFile).where(SourceFile.id.in_(chunk)).values(gone=True))


def mark_present(db: Session, ids: Sequence[int]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        db.execute(update(SourceFile).where(SourceFile.id.in_(chunk)).values(gone=False))


# -- assets --------------------------------------------------------------------------------


def find_asset(db: Session, sha256: str) -> Asset | None:
    return db.get(Asset, sha256)


def asset_exists(db: Session, sha256: str) -> bool:
    return db.scalar(select(Asset.sha256).where(Asset.sha256 == sha256)) is not None


def add_assets(db: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert assets; content already catalogued (by anyone, a moment ago) is left as it is.

    Returns the sha256 of the rows inserted now: a task whose content another run catalogued
    first is a duplicate, not a second asset.
    """
    return insert_returning_new(db, Asset, rows, conflict=["sha256"], key=Asset.sha256)


def mark_in_library(db: Session, sha256s: Sequence[str]) -> None:
    """These index-only assets have their original in the library now."""
    if sha256s:
        db.execute(update(Asset).where(Asset.sha256.in_(list(sha256s))).values(index_only=False))


def upsert_source_files(
    db: Session, new_rows: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    """Insert provenance rows for files seen for the first time, update the known ones.

    A "new" row that exists after all (listed twice, or recorded by a run that was thought
    dead) is updated in place: one row per (source, ref), always.
    """
    for row in new_rows:
        changed = {k: v for k, v in row.items() if k not in ("source_id", "ref", "first_seen")}
        upsert(db, SourceFile, row, conflict=["source_id", "ref"], update=changed)
    if updates:
        db.execute(update(SourceFile), updates)


def touch_source_scan(db: Session, source_id: int) -> None:
    db.execute(update(Source).where(Source.id == source_id).values(last_scan_at=utcnow()))


def session_assets(db: Session, session_id: int) -> list[str]:
    """The sha256 of every asset first catalogued by one session."""
    return list(db.scalars(select(Asset.sha256).where(Asset.session_id == session_id)))


def iter_assets(db: Session, *, columns: Sequence[Any] = ()) -> Iterable[Any]:
    cols = columns or (Asset.sha256, Asset.size, Asset.library_path)
    return db.execute(select(*cols).order_by(Asset.sha256)).yield_per(1000)


# -- sidecars ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SidecarRef:
    """What a sidecar check needs of one asset (``sidecar_mtime_ns`` None: never settled)."""

    sha256: str
    library_path: str
    sidecar_mtime_ns: int | None


def sidecar_refs(db: Session, *, after: str = "", limit: int = 1000) -> list[SidecarRef]:
    """The next ``limit`` assets after the sha256 ``after``: keyset paging over the key.

    Index-only assets are left out: a sidecar sits beside an original, they have none.
    """
    rows = db.execute(
        select(Asset.sha256, Asset.library_path, Asset.sidecar_mtime_ns)
        .where(Asset.sha256 > after, Asset.index_only.is_(False))
        .order_by(Asset.sha256)
        .limit(limit)
    )
    return [SidecarRef(r[0], r[1], r[2]) for r in rows]


def assets_by_sha(db: Session, sha256s: Sequence[str]) -> dict[str, Asset]:
    """Full asset rows for the given keys (missing keys are left out)."""
    found: dict[str, Asset] = {}
    for start in range(0, len(sha256s), 500):
        chunk = sha256s[start : start + 500]
        for asset in db.scalars(select(Asset).where(Asset.sha256.in_(chunk))):
            found[asset.sha256] = asset
    return found


def asset_provenance(db: Session, sha256s: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Per asset, every (source name, path in source) that held its bytes, first seen first."""
    found: dict[str, list[tuple[str, str]]] = {}
    for start in range(0, len(sha256s), 500):
        chunk = sha256s[start : start + 500]
        rows = db.execute(
            select(SourceFile.sha256, Source.name, SourceFile.ref)
            .join(Source, Source.id == SourceFile.source_id)
            .where(SourceFile.sha256.in_(chunk))
            .order_by(SourceFile.first_seen, SourceFile.id)
        )
        for sha, name, ref in rows:
            if sha is not None:
                found.setdefault(sha, []).append((name, ref))
    return found


def update_sidecar_fields(db: Session, rows: list[dict[str, Any]]) -> None:
    """Store user fields read from sidecars: each row holds ``sha256`` and the new values.

    Every row must carry the same keys (keywords, rating, label, title, description,
    regions, sidecar_mtime_ns).
    """
    if rows:
        db.execute(update(Asset), rows)


# -- sessions ------------------------------------------------------------------------------


def write_session_counts(db: Session, session_id: int, counts: dict[str, int]) -> None:
    """Store a run's running totals (seen, new, duplicate, unchanged, failed, skipped, bytes)."""
    db.execute(update(ImportSession).where(ImportSession.id == session_id).values(**counts))


def add_session_failures(db: Session, session_id: int, failures: list[tuple[str, str]]) -> None:
    if failures:
        db.execute(
            insert(SessionFailure),
            [{"session_id": session_id, "path": p, "reason": r} for p, r in failures],
        )


def session_failures(db: Session, session_id: int, limit: int = 1000) -> list[tuple[str, str]]:
    rows = db.execute(
        select(SessionFailure.path, SessionFailure.reason)
        .where(SessionFailure.session_id == session_id)
        .order_by(SessionFailure.id)
        .limit(limit)
    )
    return [(r[0], r[1]) for r in rows]


def skipped_files(db: Session, session_id: int, limit: int = 1000) -> list[tuple[str, str]]:
    """``(source:ref, reason)`` of the files the sources of an import session skip, as their
    latest scan left them (an unchanged folder keeps the rows of the scan that examined it)."""
    run = db.get(ImportSession, session_id)
    if run is None or run.kind != "import" or not run.device:
        return []
    names = run.device.split(", ")  # the run's device is its source names, joined so
    rows = db.execute(
        select(Source.name, SourceFile.ref, SourceFile.error)
        .join(Source, Source.id == SourceFile.source_id)
        .where(Source.name.in_(names), SourceFile.state == "skipped", SourceFile.gone.is_(False))
        .order_by(Source.name, SourceFile.ref)
        .limit(limit)
    )
    return [(f"{r[0]}:{r[1]}", r[2] or "skipped") for r in rows]


def session_by_id(db: Session, session_id: int) -> ImportSession | None:
    return db.get(ImportSession, session_id)


def recent_sessions(db: Session, limit: int = 20) -> list[ImportSession]:
    return list(db.scalars(select(ImportSession).order_by(ImportSession.id.desc()).limit(limit)))


# -- reports -------------------------------------------------------------------------------


def asset_counts(db: Session) -> dict[str, dict[str, int]]:
    """Per kind (photo, raw, video): count and bytes of catalogued originals."""
    rows = db.execute(
        select(Asset.kind, func.count(), func.coalesce(func.sum(Asset.size), 0)).group_by(
            Asset.kind
        )
    )
    return {r[0]: {"count": int(r[1]), "bytes": int(r[2])} for r in rows}


def source_summaries(db: Session) -> list[dict[str, Any]]:
    """Per source: files by state, gone files, and bytes of what it contributed."""
    sources = list(db.scalars(select(Source).order_by(Source.name)))
    counts: dict[int, dict[str, int]] = {}
    for source_id, state, gone, n, size in db.execute(
        select(
            SourceFile.source_id,
            SourceFile.state,
            SourceFile.gone,
            func.count(),
            func.coalesce(func.sum(SourceFile.size), 0),
        ).group_by(SourceFile.source_id, SourceFile.state, SourceFile.gone)
    ):
        bucket = counts.setdefault(source_id, {"files": 0, "bytes": 0, "gone": 0})
        bucket["files"] += int(n)
        bucket["bytes"] += int(size)
        if gone:
            bucket["gone"] += int(n)
        bucket[state] = bucket.get(state, 0) + int(n)
    out = []
    for source in sources:
        bucket = counts.get(source.id, {"files": 0, "bytes": 0, "gone": 0})
        out.append(
            {
                "name": source.name,
                "kind": source.kind,
                "location": source.location,
                "files": bucket["files"],
                "bytes": bucket["bytes"],
                "imported": bucket.get("imported", 0),
                "duplicate": bucket.get("duplicate", 0),
                "failed": bucket.get("failed", 0),
                "skipped": bucket.get("skipped", 0),
                "gone": bucket["gone"],
                "last_scan_at": source.last_scan_at.isoformat() + "Z"
                if source.last_scan_at
                else None,
            }
        )
    return out
