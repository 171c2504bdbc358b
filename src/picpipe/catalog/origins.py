"""Catalog reads of where an original's bytes may be fetched from (``web/origins.py`` fetches)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from sqlalchemy import select

from picpipe.catalog.models import Asset, Destination, Replica, Source, SourceFile

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class AssetFacts:
    """What serving an original needs to know about the asset (one catalog row)."""

    sha256: str
    size: int
    kind: str
    mime_type: str | None
    file_type: str | None
    library_path: str
    index_only: bool = False  # the original is only at its sources (`mode: index`)

    @property
    def ext(self) -> str:
        suffix = PurePosixPath(self.library_path).suffix.lower().lstrip(".")
        return suffix if suffix.isalnum() and len(suffix) <= 10 else "bin"


def asset_facts(db: Session, sha256: str) -> AssetFacts | None:
    """The asset's row as `AssetFacts`, or None when the catalog does not know it."""
    row = db.execute(
        select(
            Asset.size,
            Asset.kind,
            Asset.mime_type,
            Asset.file_type,
            Asset.library_path,
            Asset.index_only,
        ).where(Asset.sha256 == sha256)
    ).first()
    if row is None:
        return None
    return AssetFacts(sha256, int(row[0]), row[1], row[2], row[3], row[4], bool(row[5]))


def verified_replicas(db: Session, sha256: str) -> list[tuple[str, str | None]]:
    """(destination name, remote key) of every verified replica, most recently verified first."""
    rows = db.execute(
        select(Destination.name, Replica.remote_key)
        .join(Destination, Destination.id == Replica.destination_id)
        .where(Replica.sha256 == sha256, Replica.state == "verified")
        .order_by(Replica.verified_at.desc(), Destination.name)
    ).all()
    return [(name, key) for name, key in rows]


def source_files(db: Session, sha256: str) -> list[tuple[str, str, str, str]]:
    """(source name, kind, location, ref) of every present source file with these bytes.

    Most recently seen first; files marked gone are left out.
    """
    rows = db.execute(
        select(Source.name, Source.kind, Source.location, SourceFile.ref)
        .join(Source, Source.id == SourceFile.source_id)
        .where(SourceFile.sha256 == sha256, SourceFile.gone.is_(False))
        .order_by(SourceFile.last_seen.desc(), Source.name)
    ).all()
    return [(name, kind, location, ref) for name, kind, location, ref in rows]
