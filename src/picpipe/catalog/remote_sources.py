"""What remote sources (Immich) keep in the catalog: their state between runs and the SHA-1
checksums servers report for assets.

A source's state is secret-free JSON on its row (an Immich listing's high-water mark). The
SHA-1 of an asset is recorded once picpipe has checked a server's checksum against the bytes;
a later listing that names the same SHA-1 is content picpipe has, so it is not downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from picpipe.catalog.models import Asset, Destination, Replica, Source

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.orm import Session


def source_state(db: Session, source_id: int) -> dict[str, Any]:
    """The state the source saved after its last run ({} before the first)."""
    state = db.scalar(select(Source.state).where(Source.id == source_id))
    return dict(state) if isinstance(state, dict) else {}


def save_source_state(db: Session, source_id: int, state: dict[str, Any]) -> None:
    db.execute(update(Source).where(Source.id == source_id).values(state=state))


def assets_by_sha1(db: Session, sha1s: Iterable[str]) -> dict[str, tuple[str, str, int]]:
    """Hex SHA-1 → (sha256, library path, size) of the assets with those checksums."""
    wanted = sorted(set(sha1s))
    found: dict[str, tuple[str, str, int]] = {}
    for start in range(0, len(wanted), 500):  # below every engine's bound-parameter limit
        rows = db.execute(
            select(Asset.sha1, Asset.sha256, Asset.library_path, Asset.size).where(
                Asset.sha1.in_(wanted[start : start + 500])
            )
        )
        for sha1, sha256, path, size in rows:
            if sha1 is not None:
                found[sha1] = (sha256, path, size)
    return found


def uploaded_as(db: Session, kind: str, key: str) -> tuple[str, str, int] | None:
    """(sha256, library path, size) of the asset picpipe stored as ``key`` at a destination of
    ``kind``, verified there; None when ``key`` names no replica of picpipe's."""
    row = db.execute(
        select(Asset.sha256, Asset.library_path, Asset.size)
        .join(Replica, Replica.sha256 == Asset.sha256)
        .join(Destination, Destination.id == Replica.destination_id)
        .where(Destination.kind == kind, Replica.remote_key == key, Replica.state == "verified")
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def record_sha1s(db: Session, pairs: Iterable[tuple[str, str]]) -> None:
    """Set the SHA-1 of assets (sha256, hex sha1) that have none yet."""
    for sha256, sha1 in pairs:
        db.execute(
            update(Asset).where(Asset.sha256 == sha256, Asset.sha1.is_(None)).values(sha1=sha1)
        )
