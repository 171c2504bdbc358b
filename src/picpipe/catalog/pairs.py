"""Catalog reads and writes of Live Photo and RAW+JPEG pairing (``pipeline/pairs.py`` decides).

Every function takes a Session and chunks long lists itself (``_CHUNK`` values per ``IN``), so
callers pass whole sets of any size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select, tuple_, update

from picpipe.catalog.models import Asset, SourceFile

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from sqlalchemy.orm import Session

T = TypeVar("T")
_CHUNK = 500  # values per IN list: well under SQLite's and PostgreSQL's parameter limits


@dataclass(frozen=True, slots=True)
class PlacedAsset:
    """One source file and the asset it holds: what pairing by name compares."""

    source_id: int
    folder: str
    ref: str
    sha256: str
    kind: str  # photo | raw | video
    taken: datetime
    duration: float | None
    pair_id: str | None


def live_photo_ids(db: Session, sha256s: Sequence[str]) -> set[str]:
    """The non-empty Live Photo content ids of the assets ``sha256s``."""
    ids: set[str] = set()
    for chunk in _chunks(sha256s):
        ids.update(
            i
            for i in db.scalars(
                select(Asset.live_photo_id).where(
                    Asset.sha256.in_(chunk), Asset.live_photo_id.is_not(None)
                )
            )
            if i
        )
    return ids


def live_photo_members(db: Session, content_id: str) -> list[tuple[str, str]]:
    """(sha256, kind) of every asset carrying the Live Photo content id ``content_id``."""
    rows = db.execute(
        select(Asset.sha256, Asset.kind).where(Asset.live_photo_id == content_id)
    ).all()
    return [(sha, kind) for sha, kind in rows]


def source_places(db: Session, sha256s: Sequence[str]) -> set[tuple[int, str]]:
    """(source id, folder) of every source file holding one of the assets ``sha256s``."""
    places: set[tuple[int, str]] = set()
    for chunk in _chunks(sha256s):
        places.update(
            (r[0], r[1])
            for r in db.execute(
                select(SourceFile.source_id, SourceFile.folder).where(SourceFile.sha256.in_(chunk))
            )
        )
    return places


def assets_in_places(db: Session, places: Sequence[tuple[int, str]]) -> Iterator[PlacedAsset]:
    """Every source file in the (source id, folder) ``places`` joined with its asset."""
    for chunk in _chunks(places):
        rows = db.execute(
            select(
                SourceFile.source_id,
                SourceFile.folder,
                SourceFile.ref,
                Asset.sha256,
                Asset.kind,
                Asset.taken_local,
                Asset.duration,
                Asset.pair_id,
            )
            .join(Asset, Asset.sha256 == SourceFile.sha256)
            .where(tuple_(SourceFile.source_id, SourceFile.folder).in_(chunk))
        )
        for source_id, folder, ref, sha, kind, taken, duration, pair_id in rows:
            yield PlacedAsset(source_id, folder, ref, sha, kind, taken, duration, pair_id)


def set_pair(db: Session, sha256s: Sequence[str], pair_id: str, kind: str) -> int:
    """Give the still unpaired assets among ``sha256s`` the pair ``pair_id`` of ``kind``.

    An asset that already has a pair keeps it (linking never unlinks). Returns how many rows
    changed; the caller commits.
    """
    result = db.execute(
        update(Asset)
        .where(Asset.sha256.in_(sha256s), Asset.pair_id.is_(None))
        .values(pair_id=pair_id, pair_kind=kind)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def set_edit_of(db: Session, edit: str, original: str) -> int:
    """Link the asset ``edit`` to its ``original`` unless it is linked already."""
    result = db.execute(
        update(Asset).where(Asset.sha256 == edit, Asset.edit_of.is_(None)).values(edit_of=original)
    )
    return int(getattr(result, "rowcount", 0) or 0)
