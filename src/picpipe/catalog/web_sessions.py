"""Catalog reads and writes of ``picpipe serve`` login sessions (table ``web_session``).

A session is valid while its row exists and ``expires_at`` lies ahead. Rows are keyed by the
SHA-256 of the random session id, so the catalog never holds a value a cookie could reuse.
Times are naive UTC, like every other catalog time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from picpipe.catalog.models import WebSession
from picpipe.hashing import sha256_bytes

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from sqlalchemy.orm import Session


def id_hash(session_id: str) -> str:
    """The stored key of ``session_id``."""
    return sha256_bytes(session_id.encode("utf-8", "replace"))


def add_session(
    db: Session, session_id: str, role: str, *, now: datetime, lifetime: timedelta
) -> None:
    """Record a new session (and drop expired ones, so the table stays small); commits."""
    db.execute(delete(WebSession).where(WebSession.expires_at < now))
    db.add(
        WebSession(
            id_hash=id_hash(session_id), role=role, created_at=now, expires_at=now + lifetime
        )
    )
    db.commit()


def session_role(db: Session, session_id: str, *, now: datetime) -> str | None:
    """The role (``w``/``r``) of a live session, None when it was revoked or expired."""
    row = db.execute(
        select(WebSession.role, WebSession.expires_at).where(
            WebSession.id_hash == id_hash(session_id)
        )
    ).first()
    if row is None or row.expires_at < now:
        return None
    return str(row.role)


def revoke_session(db: Session, session_id: str) -> bool:
    """Delete one session; True when it existed. Commits."""
    result = db.execute(delete(WebSession).where(WebSession.id_hash == id_hash(session_id)))
    db.commit()
    return bool(getattr(result, "rowcount", 0))
