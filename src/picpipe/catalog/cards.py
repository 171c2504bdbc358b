"""Catalog reads and writes of card sessions and of what the safety check needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from picpipe.catalog.models import Asset, CardSession, Replica, Source, SourceFile
from picpipe.catalog.queries import utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from picpipe.sources.card_detect import CardIdentity

# A session in one of these states was cut short (card pulled, picpipe stopped or killed):
# the same card inserted again carries on with it.
RESUMABLE = ("reading", "replicating", "checking", "interrupted")
FINAL = ("safe", "not_safe")


def card_source_name(source_name: str, card: CardIdentity) -> str:
    """The catalog source of one card: its files are remembered per card across insertions."""
    return f"{source_name}:{card.label}:{card.uuid}"


def begin_card_session(db: Session, source_name: str, card: CardIdentity) -> tuple[int, bool]:
    """The session of this insertion: the card's unfinished one resumed, else a new one.
    Returns (id, resumed)."""
    row = db.scalar(
        select(CardSession)
        .where(
            CardSession.source_name == source_name,
            CardSession.uuid == card.uuid,
            CardSession.label == card.label,
        )
        .order_by(CardSession.id.desc())
        .limit(1)
    )
    now = utcnow()
    if row is not None and row.state in RESUMABLE:
        row.state, row.mount_path, row.reader = "reading", card.path, card.reader
        row.insertions += 1
        row.ended_at, row.error, row.updated_at = None, None, now
        return row.id, True
    row = CardSession(
        source_name=source_name,
        label=card.label,
        uuid=card.uuid,
        capacity=card.capacity,
        reader=card.reader,
        mount_path=card.path,
        state="reading",
        started_at=now,
        updated_at=now,
        insertions=1,
        files=0,
    )
    db.add(row)
    db.flush()
    return row.id, False


def update_card_session(db: Session, session_id: int, **fields: Any) -> None:
    """Set ``fields`` (state, files, blocking, error, run ids); a final or interrupted state
    also ends the session."""
    row = db.get(CardSession, session_id)
    if row is None:
        return
    for key, value in fields.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    if fields.get("state") in (*FINAL, "interrupted"):
        row.ended_at = row.updated_at


def card_sessions(db: Session, limit: int = 100) -> list[CardSession]:
    """The newest card sessions first."""
    stmt = select(CardSession).order_by(CardSession.id.desc()).limit(limit)
    return list(db.scalars(stmt))


@dataclass(frozen=True, slots=True)
class CardFile:
    """What the catalog knows of one file read from a card."""

    ref: str
    size: int
    mtime_ns: int
    state: str
    sha256: str | None
    error: str | None


def card_files(db: Session, catalog_source: str) -> dict[str, CardFile]:
    """The card's files not marked gone, by ref."""
    source_id = db.scalar(select(Source.id).where(Source.name == catalog_source))
    if source_id is None:
        return {}
    rows = db.execute(
        select(
            SourceFile.ref,
            SourceFile.size,
            SourceFile.mtime_ns,
            SourceFile.state,
            SourceFile.sha256,
            SourceFile.error,
        ).where(SourceFile.source_id == source_id, SourceFile.gone.is_(False))
    )
    return {r.ref: CardFile(r.ref, r.size, r.mtime_ns, r.state, r.sha256, r.error) for r in rows}


def library_paths(db: Session, shas: list[str]) -> dict[str, str]:
    """sha256 → the original's path in the library, for the assets that exist."""
    out: dict[str, str] = {}
    for start in range(0, len(shas), 500):
        chunk = shas[start : start + 500]
        rows = db.execute(select(Asset.sha256, Asset.library_path).where(Asset.sha256.in_(chunk)))
        out.update({r.sha256: r.library_path for r in rows})
    return out


def verified_replicas(db: Session, shas: list[str]) -> dict[str, int]:
    """sha256 → how many destinations hold a verified replica of it."""
    out: dict[str, int] = {}
    for start in range(0, len(shas), 500):
        chunk = shas[start : start + 500]
        rows = db.execute(
            select(Replica.sha256, func.count())
            .where(Replica.sha256.in_(chunk), Replica.state == "verified")
            .group_by(Replica.sha256)
        )
        out.update({sha: int(n) for sha, n in rows})
    return out
