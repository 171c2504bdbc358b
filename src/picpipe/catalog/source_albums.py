"""Albums that come from a source (a Synology album): recorded after each import, and looked
up by the source's own keys (the photos-sync names ``/files/<cache_key>.jpg``).

An album is found by (source, external id) and renamed when the source renamed it; its members
are replaced by what the listing saw, so a photo removed from the album leaves it (the asset
and its original stay). Only members whose source file was imported are recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from picpipe.catalog.models import Album, AlbumAsset, Source, SourceFile

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from picpipe.sources.base import SourceAlbum

_CHUNK = 500


def record_source_albums(db: Session, source_name: str, albums: Sequence[SourceAlbum]) -> int:
    """Write the membership of ``albums`` of source ``source_name``; returns members recorded."""
    source_id = db.scalar(select(Source.id).where(Source.name == source_name))
    if source_id is None:
        return 0
    now = datetime.now(UTC).replace(tzinfo=None)
    recorded = 0
    for album in albums:
        row = db.scalar(
            select(Album).where(
                Album.source_id == source_id, Album.external_id == album.external_id
            )
        )
        if row is None:
            row = Album(
                name=album.name, source_id=source_id, external_id=album.external_id, created_at=now
            )
            db.add(row)
            db.flush()
        elif row.name != album.name:
            row.name = album.name
        members = _imported(db, source_id, list(album.members))
        keys: dict[str, str | None] = {}
        for ref, sha256 in members.items():
            keys.setdefault(sha256, album.members[ref])  # one asset, two refs: the first key
        db.execute(delete(AlbumAsset).where(AlbumAsset.album_id == row.id))
        db.add_all(
            AlbumAsset(album_id=row.id, sha256=sha, source_key=key) for sha, key in keys.items()
        )
        recorded += len(keys)
    return recorded


def _imported(db: Session, source_id: int, refs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for start in range(0, len(refs), _CHUNK):
        rows = db.execute(
            select(SourceFile.ref, SourceFile.sha256).where(
                SourceFile.source_id == source_id,
                SourceFile.ref.in_(refs[start : start + _CHUNK]),
                SourceFile.sha256.is_not(None),
                SourceFile.gone.is_(False),
            )
        )
        out.update({ref: sha for ref, sha in rows if sha is not None})
    return out


def asset_by_source_key(db: Session, key: str) -> str | None:
    """The sha256 of the album member a source knows as ``key`` (None: no such member)."""
    return db.scalar(select(AlbumAsset.sha256).where(AlbumAsset.source_key == key).limit(1))


def source_keys(db: Session) -> dict[str, str]:
    """sha256 → the source key it is known by (the photos-sync name), for every keyed member."""
    rows = db.execute(
        select(AlbumAsset.sha256, AlbumAsset.source_key)
        .where(AlbumAsset.source_key.is_not(None))
        .order_by(AlbumAsset.album_id)
    )
    out: dict[str, str] = {}
    for sha, key in rows:
        if key is not None:
            out.setdefault(sha, key)
    return out


__all__ = ["asset_by_source_key", "record_source_albums", "source_keys"]
