"""Same picture, different metadata: assets whose coded image (payload hash) is equal.

Recorded and listed, never merged: a copy whose EXIF date icloudpd patched or into which
digiKam wrote keywords has other bytes (another SHA-256, another asset) but the same
`payload_sha256` (see `pipeline/payload.py`). Assets imported before the payload hash existed
have none and take no part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from picpipe.catalog.models import Asset

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class PayloadGroup:
    """Two or more assets (oldest capture first) that are one picture."""

    payload_sha256: str
    assets: list[Asset]


def payload_groups(db: Session, *, limit: int = 1000, after: str = "") -> list[PayloadGroup]:
    """Up to ``limit`` groups in payload-hash order, starting after the hash ``after``."""
    shared = (
        select(Asset.payload_sha256)
        .where(Asset.payload_sha256.is_not(None), Asset.payload_sha256 > after)
        .group_by(Asset.payload_sha256)
        .having(func.count() > 1)
        .order_by(Asset.payload_sha256)
        .limit(limit)
    )
    keys = [key for key in db.scalars(shared) if key is not None]
    if not keys:
        return []
    rows = db.scalars(
        select(Asset)
        .where(Asset.payload_sha256.in_(keys))
        .order_by(Asset.payload_sha256, Asset.taken_local, Asset.sha256)
    )
    groups: dict[str, list[Asset]] = {key: [] for key in keys}
    for asset in rows:
        assert asset.payload_sha256 is not None
        groups[asset.payload_sha256].append(asset)
    return [PayloadGroup(key, assets) for key, assets in groups.items()]
