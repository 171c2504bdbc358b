"""Catalog reads for the link views (`library/views.py`): every asset, album and source path.

Plain tuples through SQLAlchemy Core: a view of 100,000 assets is rebuilt from one pass over
each table, so these reads stay free of ORM objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, or_, select

from picpipe.catalog.models import Album, AlbumAsset, Asset, Source, SourceFile

if TYPE_CHECKING:
    from collections.abc import Collection

    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class ViewAsset:
    """What a view needs of one asset (no dates: the original's day folder has the date)."""

    sha256: str
    library_path: str
    original_name: str
    kind: str  # photo | raw | video
    make: str | None
    model: str | None
    pair_id: str | None
    sidecar_mtime_ns: int | None


@dataclass(frozen=True, slots=True)
class CatalogSignature:
    """Aggregates that change when assets come, go, pair up or gain a sidecar."""

    assets: int
    paired: int
    with_sidecar: int
    last_import: str | None  # the newest imported_at, ISO

    def as_dict(self) -> dict[str, object]:
        return {
            "assets": self.assets,
            "paired": self.paired,
            "with_sidecar": self.with_sidecar,
            "last_import": self.last_import,
        }


_COLUMNS = (
    Asset.sha256,
    Asset.library_path,
    Asset.original_name,
    Asset.kind,
    Asset.make,
    Asset.model,
    Asset.pair_id,
    Asset.sidecar_mtime_ns,
)
_ORDER = (Asset.imported_at, Asset.sha256)


def view_assets(db: Session) -> list[ViewAsset]:
    """Every asset, oldest import first (the order that decides who keeps a contested name)."""
    return [ViewAsset(*row) for row in db.execute(select(*_COLUMNS).order_by(*_ORDER))]


def catalog_signature(db: Session) -> CatalogSignature:
    """One aggregate pass over the assets (see `CatalogSignature`)."""
    row = db.execute(
        select(
            func.count(),
            func.count(Asset.pair_id),
            func.count(Asset.sidecar_mtime_ns),
            func.max(Asset.imported_at),
        ).select_from(Asset)
    ).one()
    last: datetime | None = row[3]
    return CatalogSignature(
        int(row[0]), int(row[1]), int(row[2]), last.isoformat() if last is not None else None
    )


def assets_imported_after(db: Session, after: datetime) -> list[ViewAsset]:
    """Assets catalogued after ``after`` (the ``imported_at`` index), oldest first."""
    query = select(*_COLUMNS).where(Asset.imported_at > after).order_by(*_ORDER)
    return [ViewAsset(*row) for row in db.execute(query)]


def assets_in_folders(db: Session, folders: Collection[str]) -> list[ViewAsset]:
    """Assets whose original lies directly in one of ``folders`` (``originals/YYYY/MM/DD``).

    An original's day folder is its local capture date, so the (taken_local, sha256) index
    finds the candidates; the folder itself decides.
    """
    days = []
    for folder in folders:
        _originals, year, month, day = folder.split("/")
        days.append(date(int(year), int(month), int(day)))
    if not days:
        return []
    ranges = [
        and_(
            Asset.taken_local >= datetime.combine(d, time()),
            Asset.taken_local < datetime.combine(d + timedelta(days=1), time()),
        )
        for d in days
    ]
    query = select(*_COLUMNS).where(or_(*ranges)).order_by(*_ORDER)
    wanted = {f"{folder}/" for folder in folders}
    return [
        ViewAsset(*row) for row in db.execute(query) if row[1][: row[1].rfind("/") + 1] in wanted
    ]


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
