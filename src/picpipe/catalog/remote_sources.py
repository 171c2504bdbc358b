"""What remote sources (Immich) keep in the catalog: their state between runs, the SHA-1
checksums servers report for assets, their albums and the pairs they name.

A source's state is secret-free JSON on its row (an Immich listing's high-water mark). The
SHA-1 of an asset is recorded once picpipe has checked a server's checksum against the bytes;
a later listing that names the same SHA-1 is content picpipe has, so it is not downloaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update

from picpipe.catalog.models import (
    Album,
    AlbumAsset,
    Asset,
    Destination,
    Replica,
    Source,
    SourceFile,
)
from picpipe.catalog.pairs import set_pair
from picpipe.catalog.queries import utcnow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

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


def shas_of_refs(db: Session, source_id: int, refs: Iterable[str]) -> dict[str, str]:
    """ref → sha256 of the source's files that are in the library (imported or duplicate)."""
    wanted = sorted(set(refs))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):
        rows = db.execute(
            select(SourceFile.ref, SourceFile.sha256).where(
                SourceFile.source_id == source_id,
                SourceFile.ref.in_(wanted[start : start + 500]),
                SourceFile.sha256.is_not(None),
                SourceFile.gone.is_(False),
            )
        )
        for ref, sha256 in rows:
            if sha256 is not None:
                found[ref] = sha256
    return found


def record_source_albums(
    db: Session, source_id: int, albums: Mapping[str, tuple[str, Sequence[str]]]
) -> int:
    """Each album (server id → (name, member refs), complete) as the source's picpipe album:
    created on first sight, renamed with the server, its members replaced by the assets those
    refs imported as. Members not (yet) in the library are left out. Returns the memberships
    written."""
    written = 0
    for external_id, (name, refs) in albums.items():
        album = db.scalar(
            select(Album).where(Album.source_id == source_id, Album.external_id == external_id)
        )
        if album is None:
            album = Album(
                name=name, source_id=source_id, external_id=external_id, created_at=utcnow()
            )
            db.add(album)
            db.flush()
        elif album.name != name:
            album.name = name
        shas = set(shas_of_refs(db, source_id, refs).values())
        db.execute(delete(AlbumAsset).where(AlbumAsset.album_id == album.id))
        if shas:
            db.execute(
                insert(AlbumAsset),
                [{"album_id": album.id, "sha256": sha} for sha in sorted(shas)],
            )
        written += len(shas)
    return written


def link_ref_pairs(db: Session, source_id: int, pairs: Iterable[tuple[str, str]]) -> int:
    """Pair the assets the source names as halves of one Live Photo: (still ref, motion ref).
    Halves not both in the library wait for a later run; a pair once set stays."""
    wanted = list(pairs)
    shas = shas_of_refs(db, source_id, [r for pair in wanted for r in pair])
    linked = 0
    for still, motion in wanted:
        if still in shas and motion in shas and shas[still] != shas[motion]:
            linked += set_pair(db, [shas[still], shas[motion]], f"live:{shas[still]}", "live")
    return linked
