"""Catalog reads for browsing over HTTP: filtered pages, no-repeat shuffles, details, folders.

Every function takes a Session and returns rows or plain values; the web layer shapes them.
Listing is keyset-paged over ``(taken_local, sha256)`` newest first, which the index
``ix_asset_taken_local_sha256`` serves at any depth. ``AssetFilter`` is also what the ``/files``
shuffle (``catalog/shuffle.py``) draws from.
"""

from __future__ import annotations

import hashlib  # SHA-1 of a filter as a name, not content (hashing.py hashes content)
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Text, and_, cast, exists, extract, func, or_, select, text, tuple_

from picpipe.catalog.models import (
    Album,
    AlbumAsset,
    Asset,
    Destination,
    Replica,
    Source,
    SourceFile,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import ColumnElement
    from sqlalchemy.orm import Session

Orientation = Literal["landscape", "portrait"]
# EXIF orientations 5-8 turn the picture a quarter: its display width is the stored height.
_QUARTER_TURNS = (5, 6, 7, 8)
DAY_FOLDER_CHARS = len("originals/YYYY/MM/DD")


@dataclass(frozen=True, slots=True)
class AssetFilter:
    """Which assets a listing or a shuffle draws from; every field narrows the set.

    ``taken_from``/``taken_to`` are inclusive local dates. ``camera`` matches make, model or
    "make model" (case-insensitive). ``source`` is a source name, ``album`` an album name or id.
    ``month_day`` keeps assets taken on that (month, day) in any year. ``photos_only`` keeps
    photos and RAW files whose thumbnails exist (what a wall frame can show). ``keyword`` is
    one whole keyword and ``person`` the name of a region (case-insensitive for ASCII letters),
    ``min_rating`` the lowest rating kept, ``label`` a colour label (case-insensitive) and
    ``text`` a part of the title, description or a keyword; ``place`` a city, region or country
    name (case-insensitive).
    """

    taken_from: date | None = None
    taken_to: date | None = None
    camera: str | None = None
    kinds: tuple[str, ...] = ()
    source: str | None = None
    album: str | None = None
    orientation: Orientation | None = None
    month_day: tuple[int, int] | None = None
    photos_only: bool = False
    keyword: str | None = None
    person: str | None = None
    min_rating: int | None = None
    label: str | None = None
    text: str | None = None
    place: str | None = None

    def key(self) -> str:
        """A stable 40-character name for this filter (the shuffle's round is per filter)."""
        canonical = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha1(canonical.encode(), usedforsecurity=False).hexdigest()

    def clauses(self) -> list[ColumnElement[bool]]:
        """SQL conditions on ``Asset`` for this filter."""
        out: list[ColumnElement[bool]] = []
        if self.photos_only:
            out += [Asset.kind.in_(("photo", "raw")), Asset.thumbs_state == "ok"]
        if self.kinds:
            out.append(Asset.kind.in_(self.kinds))
        if self.taken_from is not None:
            out.append(Asset.taken_local >= datetime.combine(self.taken_from, datetime.min.time()))
        if self.taken_to is not None:
            end = datetime.combine(self.taken_to + timedelta(days=1), datetime.min.time())
            out.append(Asset.taken_local < end)
        if self.camera:
            wanted = self.camera.strip().lower()
            out.append(
                or_(
                    func.lower(Asset.model) == wanted,
                    func.lower(Asset.make) == wanted,
                    func.lower(Asset.make + " " + Asset.model) == wanted,
                )
            )
        if self.source is not None:
            out.append(
                exists()
                .where(SourceFile.sha256 == Asset.sha256)
                .where(SourceFile.source_id == Source.id)
                .where(Source.name == self.source)
            )
        if self.album is not None:
            named = Album.name == self.album
            which = or_(named, Album.id == int(self.album)) if self.album.isdigit() else named
            out.append(
                exists()
                .where(AlbumAsset.sha256 == Asset.sha256)
                .where(AlbumAsset.album_id == Album.id)
                .where(which)
            )
        if self.orientation is not None:
            out.append(_orientation_clause(self.orientation))
        out += self._descriptive_clauses()
        if self.month_day is not None:
            month, day = self.month_day
            out += [
                extract("month", Asset.taken_local) == month,
                extract("day", Asset.taken_local) == day,
            ]
        return out

    def _descriptive_clauses(self) -> list[ColumnElement[bool]]:
        # Keywords and regions are JSON columns: a whole element is found as its JSON text
        # (json.dumps, as the column stores it), which SQLite and PostgreSQL match alike.
        out: list[ColumnElement[bool]] = []
        if self.keyword:
            out.append(_json_contains(Asset.keywords, json.dumps(self.keyword.strip())))
        if self.person:
            name = json.dumps({"name": self.person.strip()})[1:-1]
            out.append(_json_contains(Asset.regions, name))
        if self.place:
            name = self.place.strip().lower()
            out.append(
                or_(
                    func.lower(Asset.city) == name,
                    func.lower(Asset.region) == name,
                    func.lower(Asset.country) == name,
                )
            )
        if self.min_rating is not None:
            out.append(Asset.rating >= self.min_rating)
        if self.label:
            out.append(func.lower(Asset.label) == self.label.strip().lower())
        if self.text:
            part = f"%{_like_escape(self.text.strip().lower())}%"
            out.append(
                or_(
                    func.lower(Asset.title).like(part, escape="\\"),
                    func.lower(Asset.description).like(part, escape="\\"),
                    func.lower(cast(Asset.keywords, Text)).like(part, escape="\\"),
                )
            )
        return out


def _json_contains(column: Any, fragment: str) -> ColumnElement[bool]:
    pattern = f"%{_like_escape(fragment.lower())}%"
    return func.lower(cast(column, Text)).like(pattern, escape="\\")


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _orientation_clause(orientation: Orientation) -> ColumnElement[bool]:
    turned = Asset.orientation.in_(_QUARTER_TURNS)
    upright = or_(Asset.orientation.is_(None), Asset.orientation.not_in(_QUARTER_TURNS))
    wide, tall = Asset.width > Asset.height, Asset.height > Asset.width
    if orientation == "landscape":
        return or_(and_(upright, wide), and_(turned, tall))
    return or_(and_(upright, tall), and_(turned, wide))


# -- listing -------------------------------------------------------------------------------


def page_assets(
    db: Session, where: AssetFilter, *, after: tuple[datetime, str] | None, limit: int
) -> list[Asset]:
    """Up to ``limit`` assets newest first (ties by sha256 descending), after the key ``after``.

    ``after`` is the (taken_local, sha256) of the last asset of the previous page; every asset
    appears on exactly one page even while new assets are added.
    """
    query = select(Asset).where(*where.clauses())
    if after is not None:
        query = query.where(tuple_(Asset.taken_local, Asset.sha256) < tuple_(*after))
    query = query.order_by(Asset.taken_local.desc(), Asset.sha256.desc()).limit(limit)
    return list(db.scalars(query))


def count_assets(db: Session, where: AssetFilter) -> int:
    return int(db.scalar(select(func.count()).select_from(Asset).where(*where.clauses())) or 0)


# -- one asset -----------------------------------------------------------------------------


def provenance(db: Session, sha256: str) -> list[dict[str, Any]]:
    """Every file in every source that held these bytes, first seen first."""
    rows = db.execute(
        select(Source.name, Source.kind, SourceFile)
        .join(Source, Source.id == SourceFile.source_id)
        .where(SourceFile.sha256 == sha256)
        .order_by(SourceFile.first_seen, SourceFile.id)
    )
    return [
        {
            "source": name,
            "source_kind": kind,
            "ref": sf.ref,
            "state": sf.state,
            "size": sf.size,
            "first_seen": sf.first_seen,
            "last_seen": sf.last_seen,
            "gone": sf.gone,
        }
        for name, kind, sf in rows
    ] + _embedded_in(db, sha256)


def _embedded_in(db: Session, sha256: str) -> list[dict[str, Any]]:
    # A motion photo's video came out of its still: that is where it was "seen" (shaped as a
    # source file, so the gallery lists it as "embedded: embedded in <sha256>").
    found = db.execute(
        select(Asset.embedded_in, Asset.size, Asset.imported_at).where(Asset.sha256 == sha256)
    ).first()
    if found is None or not found.embedded_in:
        return []
    return [
        {
            "source": "embedded",
            "source_kind": "embedded",
            "ref": f"embedded in {found.embedded_in}",
            "embedded_in": found.embedded_in,
            "state": "imported",
            "size": found.size,
            "first_seen": found.imported_at,
            "last_seen": found.imported_at,
            "gone": False,
        }
    ]


def replicas(db: Session, sha256: str) -> list[dict[str, Any]]:
    """This asset at each destination: state, and when its copy was last verified."""
    rows = db.execute(
        select(Destination.name, Destination.kind, Replica)
        .join(Destination, Destination.id == Replica.destination_id)
        .where(Replica.sha256 == sha256)
        .order_by(Destination.name)
    )
    return [
        {
            "destination": name,
            "kind": kind,
            "state": replica.state,
            "verified_at": replica.verified_at,
            "updated_at": replica.updated_at,
            "attempts": replica.attempts,
        }
        for name, kind, replica in rows
    ]


def asset_albums(db: Session, sha256: str) -> list[dict[str, Any]]:
    rows = db.execute(
        select(Album.id, Album.name)
        .join(AlbumAsset, AlbumAsset.album_id == Album.id)
        .where(AlbumAsset.sha256 == sha256)
        .order_by(Album.name)
    )
    return [{"id": r[0], "name": r[1]} for r in rows]


def pair_members(db: Session, pair_id: str, *, besides: str) -> list[dict[str, Any]]:
    """The other halves of a Live Photo or RAW+JPEG pair."""
    rows = db.execute(
        select(Asset.sha256, Asset.kind)
        .where(Asset.pair_id == pair_id, Asset.sha256 != besides)
        .order_by(Asset.sha256)
    )
    return [{"sha256": r[0], "kind": r[1]} for r in rows]


def photos_named(db: Session, name: str, *, limit: int = 2) -> list[str]:
    """sha256 of photos whose original file name is ``name`` or ``name`` plus an extension."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.scalars(
        select(Asset.sha256)
        .where(*AssetFilter(photos_only=True).clauses())
        .where(
            or_(Asset.original_name == name, Asset.original_name.like(escaped + ".%", escape="\\"))
        )
        .order_by(Asset.sha256)
        .limit(limit)
    )
    return list(rows)


# -- collections ---------------------------------------------------------------------------


def albums(db: Session) -> list[dict[str, Any]]:
    """Every album with its source, size and a cover (its newest photo)."""
    counts = (
        select(AlbumAsset.album_id, func.count().label("n"))
        .group_by(AlbumAsset.album_id)
        .subquery()
    )
    rows = db.execute(
        select(Album.id, Album.name, Source.name, func.coalesce(counts.c.n, 0))
        .outerjoin(Source, Source.id == Album.source_id)
        .outerjoin(counts, counts.c.album_id == Album.id)
        .order_by(Album.name, Album.id)
    )
    out = []
    for album_id, name, source, count in rows:
        cover = db.scalar(
            select(Asset.sha256)
            .join(AlbumAsset, AlbumAsset.sha256 == Asset.sha256)
            .where(AlbumAsset.album_id == album_id)
            .order_by(Asset.taken_local.desc(), Asset.sha256.desc())
            .limit(1)
        )
        out.append(
            {"id": album_id, "name": name, "source": source, "count": int(count), "cover": cover}
        )
    return out


def day_folders(db: Session) -> list[tuple[str, int]]:
    """Each ``originals/YYYY/MM/DD`` folder of the library with its number of originals."""
    folder = func.substr(Asset.library_path, 1, DAY_FOLDER_CHARS)
    rows = db.execute(select(folder, func.count()).group_by(folder).order_by(folder))
    return [(str(r[0]), int(r[1])) for r in rows]


def photo_keys(db: Session, *, offset: int, limit: int) -> tuple[int, Sequence[str]]:
    """How many photos ``/files`` can serve, and a page of their sha256 keys."""
    where = AssetFilter(photos_only=True).clauses()
    total = int(db.scalar(select(func.count()).select_from(Asset).where(*where)) or 0)
    keys = db.scalars(
        select(Asset.sha256).where(*where).order_by(Asset.sha256).offset(offset).limit(limit)
    ).all()
    return total, keys


def database_ok(db: Session) -> bool:
    """True when the catalog answers a trivial query."""
    return db.execute(text("select 1")).scalar() == 1
