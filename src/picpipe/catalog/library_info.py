"""The catalog's own facts: its id and the id of the library it keeps (see `library/marker.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from picpipe.catalog.models import Asset, CatalogInfo
from picpipe.catalog.upsert import insert_ignore

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def catalog_fact(db: Session, key: str) -> str | None:
    return db.scalar(select(CatalogInfo.value).where(CatalogInfo.key == key))


def set_catalog_fact_once(db: Session, key: str, value: str) -> str:
    """Store ``value`` under ``key`` unless one is there; returns the value that holds."""
    insert_ignore(db, CatalogInfo, [{"key": key, "value": value}], conflict=["key"])
    held = catalog_fact(db, key)
    assert held is not None
    return held


def has_assets(db: Session) -> bool:
    return db.scalar(select(Asset.sha256).limit(1)) is not None
