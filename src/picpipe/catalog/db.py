"""URL → engine and session factory, with SQLite WAL pragmas; migrations applied on open."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from picpipe.config import mask_url
from picpipe.errors import CatalogError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class Catalog:
    """An open catalog: its engine and a session factory. ``open_catalog`` builds one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessions()

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling commits each CREATE TABLE on its own, so a kill
    # during a migration would leave half a schema; SQLAlchemy emits BEGIN itself instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode keeps the database consistent after a crash; the last commits may be
    # rolled back on power loss, which the import redoes idempotently.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")


def create_catalog_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=16
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=16, max_overflow=8, pool_pre_ping=True)


def open_catalog(url: str, *, migrate: bool = True) -> Catalog:
    """Open the catalog at ``url`` and bring its schema to the newest revision.

    Raises CatalogError (with the password masked) when the database cannot be reached.
    """
    try:
        engine = create_catalog_engine(url)
        if migrate:
            from picpipe.catalog.migrate import upgrade_to_head

            upgrade_to_head(engine)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise CatalogError(detail=f"{mask_url(url)}: {detail}") from exc
    return Catalog(engine)
