"""Assets as people know them: the original file name and where it came from, by hash.

Reports name ``/srv/phone/DCIM/IMG_0001.ARW``, not ``originals/2024/…/<sha256>.arw``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sqlalchemy import select

from picpipe.catalog.models import Asset, Source, SourceFile

if TYPE_CHECKING:
    from collections.abc import Collection

    from sqlalchemy.orm import Session

_CHUNK = 500  # hashes per IN (...) query: far below every database's parameter limit


def source_paths_of(db: Session, shas: Collection[str]) -> dict[str, str]:
    """For each hash: the path of a source file with those bytes (present ones first), else
    the asset's original file name. Hashes the catalog does not know are left out."""
    wanted = sorted(set(shas))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = db.execute(
            select(SourceFile.sha256, Source.kind, Source.location, SourceFile.ref)
            .join(Source, Source.id == SourceFile.source_id)
            .where(SourceFile.sha256.in_(chunk))
            .order_by(SourceFile.gone, SourceFile.last_seen.desc())
        )
        for sha, kind, location, ref in rows:
            if sha is not None and sha not in found:
                folder = kind == "folder"
                found[sha] = os.path.join(location, ref) if folder else f"{location}:{ref}"
        names = db.execute(select(Asset.sha256, Asset.original_name).where(Asset.sha256.in_(chunk)))
        for sha, name in names:
            found.setdefault(sha, name or sha)
    return found


__all__ = ["source_paths_of"]
