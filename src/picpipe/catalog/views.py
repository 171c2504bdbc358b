"""Catalog reads for the link views (`library/views.py`): every asset, album and source path.

Plain tuples through SQLAlchemy Core: a view of 100,000 assets is rebuilt from one pass over
each table, so these reads stay free of ORM objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from picpipe.catalog.models import Album, AlbumAsset, Asset, Source, SourceFile

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class ViewAsset:
    """What a view needs of one asset."""

    sha256: str
    library_path: str
    original_name: str
    kind: str  # photo | raw | video
    taken_local: datetime
    make: str | None
    model: str | None
    pair_id: str | None
    imported_at: datetime
    sidecar_mtime_ns: int | None


def view_assets(db: Session) -> list[ViewAsset]:
    """Every asset, oldest import first (the order that decides who keeps a contested name)."""
    columns = (
        Asset.sha256,
        Asset.library_path,
        Asset.original_name,
        Asset.kind,
        Asset.taken_local,
        Asset.make,
        Asset.model,
        Asset.pair_id,
        Asset.imported_at,
        Asset.sidecar_mtime_ns,
    )
    rows = db.execute(select(*columns).order_by(Asset.imported_at, Asset.sha256))
    return [ViewAsset(**row._asdict()) for row in rows]


def album_members(db: Session) -> list[tuple[str, str]]:
    """(album name, sha256) of every album member."""
    query = select(Album.name, AlbumAsset.sha256).join(AlbumAsset, AlbumAsset.album_id == Album.id)
    return [(name, sha) for name, sha in db.execute(query)]


def source_paths(db: Session) -> list[tuple[str, str, str]]:
    """(source name, path within the source, sha256) of every file still in its source."""
    query = (
        select(Source.name, SourceFile.ref, SourceFile.sha256)
        .join(SourceFile, SourceFile.source_id == Source.id)
        .where(
            SourceFile.sha256.is_not(None),
            SourceFile.gone.is_(False),
            SourceFile.state.in_(("imported", "duplicate")),
        )
    )
    return [(name, ref, sha) for name, ref, sha in db.execute(query) if sha is not None]
