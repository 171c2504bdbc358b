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

    @property
    def ext(self) -> str:
        suffix = PurePosixPath(self.library_path).suffix.lower().lstrip(".")
        return suffix if suffix.isalnum() and len(suffix) <= 10 else "bin"


def asset_facts(db: Session, sha256: str) -> AssetFacts | None:
    """The asset's row as `AssetFacts`, or None when the catalog does not know it."""
    row = db.execute(
        select(Asset.size, Asset.kind, Asset.mime_type, Asset.file_type, Asset.library_path).where(
            Asset.sha256 == sha256
        )
    ).first()
    if row is None:
        return None
    return AssetFacts(sha256, int(row[0]), row[1], row[2], row[3], row[4])


def verified_replicas(db: Session, sha256: str) -> list[tuple[str, str | None]]:
    """(destination name, remote key) of every verified replica, most recently verified first."""
    rows = db.execute(
        select(Destination.name, Replica.remote_key)
        .join(Destination, Destination.id == Replica.destination_id)
        .where(Replica.sha256 == sha256, Replica.state == "verified")
        .order_by(Replica.verified_at.desc(), Destination.name)
    ).all()
    return [(name, key) for name, key in rows]


def folder_source_files(db: Session, sha256: str) -> list[tuple[str, str, str]]:
    """(source name, source location, ref) of every present folder-source file with these bytes.

    Most recently seen first; files marked gone and non-folder sources are left out.
    """
    rows = db.execute(
        select(Source.name, Source.location, SourceFile.ref)
        .join(Source, Source.id == SourceFile.source_id)
        .where(
            SourceFile.sha256 == sha256,
            SourceFile.gone.is_(False),
            Source.kind == "folder",
        )
        .order_by(SourceFile.last_seen.desc())
    ).all()
    return [(name, location, ref) for name, location, ref in rows]
