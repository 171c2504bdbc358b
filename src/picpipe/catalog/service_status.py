"""What a running service shows about the library (Home Assistant, metrics): catalog reads.

Aggregates only, a few queries each, so a publisher may call `service_snapshot` after every
run and every minute. Times are ISO 8601 with ``Z`` (see `status.iso`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select

from picpipe.catalog.cards import card_sessions
from picpipe.catalog.models import (
    Asset,
    Destination,
    ImportSession,
    Replica,
    Source,
    SourceFile,
)
from picpipe.catalog.runs import lease_now
from picpipe.catalog.status import (
    IN_PROGRESS_STATES,
    copies_histogram,
    destination_counts,
    iso,
    totals,
    under_replicated,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

# How far back the per-source figures look for a source's sessions (a service runs many).
_RECENT_SESSIONS = 500
# The words errors of every kind use when a server refused the credentials (errors.py).
_AUTH_WORDS = ("authentication failed", "unauthorized", "credentials")


@dataclass(frozen=True, slots=True)
class DestinationState:
    name: str
    kind: str
    verified: int
    pending: int
    failed: int
    last_success: str | None  # the newest verification there


@dataclass(frozen=True, slots=True)
class SourceState:
    name: str
    last_success: str | None  # end of the newest completed import of it
    errors: int  # its files whose last attempt failed
    credentials_failing: bool  # its newest import failed on authentication


@dataclass(frozen=True, slots=True)
class CardState:
    """The newest session of one card (label + uuid)."""

    key: str  # stable id for topics: label and uuid
    label: str
    uuid: str
    state: str  # reading | replicating | checking | interrupted | safe | not_safe
    safe: bool
    files: int
    ended_at: str | None
    session_id: int


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """The library as the service shows it."""

    assets: int
    bytes: int
    below_target: int
    target: int
    destinations: tuple[DestinationState, ...]
    sources: tuple[SourceState, ...]
    cards: tuple[CardState, ...]
    last_session: dict[str, Any] | None

    def totals_payload(self) -> dict[str, Any]:
        return {"assets": self.assets, "bytes": self.bytes, "below_target": self.below_target}


def service_snapshot(db: Session, *, target: int, sources: Sequence[str] = ()) -> ServiceSnapshot:
    """Totals, replicas below ``target``, destinations, ``sources`` (configured names; the
    catalog's own list when empty) and the newest session of every card."""
    library = totals(db)
    below = under_replicated(copies_histogram(db, library.assets), target)
    return ServiceSnapshot(
        assets=library.assets,
        bytes=library.bytes,
        below_target=below,
        target=target,
        destinations=tuple(_destinations(db, library.assets)),
        sources=tuple(_sources(db, sources)),
        cards=tuple(_cards(db)),
        last_session=_last_session(db),
    )


def _destinations(db: Session, assets: int) -> list[DestinationState]:
    newest: dict[str, datetime | None] = {
        name: moment
        for name, moment in db.execute(
            select(Destination.name, func.max(Replica.verified_at))
            .join(Replica, Replica.destination_id == Destination.id)
            .where(Replica.state == "verified")
            .group_by(Destination.name)
        )
    }
    return [
        DestinationState(
            name=row["name"],
            kind=row["kind"],
            verified=row["verified"],
            pending=row["pending"],
            failed=row["failed"],
            last_success=iso(newest.get(row["name"])),
        )
        for row in destination_counts(db, assets)
    ]


def _sources(db: Session, configured: Sequence[str]) -> list[SourceState]:
    names = list(configured) or list(db.scalars(select(Source.name).order_by(Source.name)))
    failed = dict(
        db.execute(
            select(Source.name, func.count())
            .join(SourceFile, SourceFile.source_id == Source.id)
            .where(SourceFile.state == "failed", SourceFile.gone.is_(False))
            .group_by(Source.name)
        ).all()
    )
    # A session's device is the comma-joined names of the sources it imported.
    recent = db.execute(
        select(
            ImportSession.device, ImportSession.status, ImportSession.ended_at, ImportSession.error
        )
        .where(ImportSession.kind == "import", ImportSession.status != "running")
        .order_by(ImportSession.id.desc())
        .limit(_RECENT_SESSIONS)
    ).all()
    out = []
    for name in names:
        mine = [r for r in recent if name in (r.device or "").split(", ")]
        success = next((r.ended_at for r in mine if r.status.startswith("completed")), None)
        newest = mine[0] if mine else None
        auth = bool(
            newest is not None
            and newest.status == "failed"
            and any(word in (newest.error or "").lower() for word in _AUTH_WORDS)
        )
        out.append(SourceState(name, iso(success), int(failed.get(name, 0)), auth))
    return out


def _cards(db: Session) -> list[CardState]:
    seen: dict[tuple[str, str], CardState] = {}
    for row in card_sessions(db, limit=200):  # newest first: the first per card wins
        ident = (row.label, row.uuid)
        if ident in seen:
            continue
        seen[ident] = CardState(
            key=f"{row.label}_{row.uuid}",
            label=row.label,
            uuid=row.uuid,
            state=row.state,
            safe=row.state == "safe",
            files=row.files,
            ended_at=iso(row.ended_at),
            session_id=row.id,
        )
    return sorted(seen.values(), key=lambda card: card.key)


def _last_session(db: Session) -> dict[str, Any] | None:
    """The newest finished session that did something or failed: a scheduled sync or rescan
    that found nothing to do must not replace "412 files backed up" in Home Assistant."""
    row = db.scalar(
        select(ImportSession)
        .where(
            ImportSession.status != "running",
            or_(
                ImportSession.new > 0,
                ImportSession.duplicate > 0,
                ImportSession.failed > 0,
                ImportSession.bytes > 0,
                ~ImportSession.status.like("completed%"),
            ),
        )
        .order_by(ImportSession.id.desc())
        .limit(1)
    )
    if row is None:
        return None
    return {
        "id": row.id,
        "kind": row.kind,
        "device": row.device,
        "status": row.status,
        "new": row.new,
        "duplicate": row.duplicate,
        "failed": row.failed,
        "bytes": row.bytes,
        "ended_at": iso(row.ended_at),
    }


# -- metrics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What is waiting: replicas on their way per destination, running sessions, and the
    age in seconds of the oldest asset that still lacks a verified copy somewhere."""

    replicas_in_progress: dict[str, int]
    running_sessions: int
    oldest_unverified_seconds: float
    files_by_outcome: dict[str, int]
    bytes_imported: int


def queue_figures(db: Session) -> QueueFigures:
    """The catalog side of ``/metrics``: a handful of grouped counts."""
    in_progress = dict(
        db.execute(
            select(Destination.name, func.count())
            .join(Replica, Replica.destination_id == Destination.id)
            .where(Replica.state.in_(IN_PROGRESS_STATES))
            .group_by(Destination.name)
        ).all()
    )
    running = db.scalar(
        select(func.count()).select_from(ImportSession).where(ImportSession.status == "running")
    )
    oldest = _oldest_unverified(db)
    lag = (lease_now() - oldest).total_seconds() if oldest is not None else 0.0
    sums = db.execute(
        select(
            func.coalesce(func.sum(ImportSession.new), 0),
            func.coalesce(func.sum(ImportSession.duplicate), 0),
            func.coalesce(func.sum(ImportSession.unchanged), 0),
            func.coalesce(func.sum(ImportSession.failed), 0),
            func.coalesce(func.sum(ImportSession.skipped), 0),
            func.coalesce(func.sum(ImportSession.bytes), 0),
        ).where(ImportSession.kind == "import")
    ).one()
    outcomes = dict(
        zip(("new", "duplicate", "unchanged", "failed", "skipped"), sums[:5], strict=True)
    )
    return QueueFigures(
        replicas_in_progress={k: int(v) for k, v in in_progress.items()},
        running_sessions=int(running or 0),
        oldest_unverified_seconds=max(lag, 0.0),
        files_by_outcome={k: int(v) for k, v in outcomes.items()},
        bytes_imported=int(sums[5]),
    )


def _oldest_unverified(db: Session) -> datetime | None:
    """When the oldest asset lacking a verified copy at some destination was imported."""
    destinations = int(db.scalar(select(func.count()).select_from(Destination)) or 0)
    if destinations == 0:
        return None
    verified = (
        select(Replica.sha256, func.count().label("n"))
        .where(Replica.state == "verified")
        .group_by(Replica.sha256)
        .subquery()
    )
    return db.scalar(
        select(func.min(Asset.imported_at))
        .outerjoin(verified, verified.c.sha256 == Asset.sha256)
        .where(func.coalesce(verified.c.n, 0) < destinations)
    )
