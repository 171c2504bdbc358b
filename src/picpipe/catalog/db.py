"""URL → engine and session factory, with SQLite WAL pragmas; migrations applied on open."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from picpipe.config import mask_url
from picpipe.errors import CatalogError, CatalogUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Engine, ExceptionContext

log = logging.getLogger(__name__)


class Catalog:
    """An open catalog: its engine and a session factory. ``open_catalog`` builds one."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self._writers = sessionmaker(
            engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> Session:
        return self.sessions()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction, committed at the end of the block (rolled back on error).

        On SQLite it takes the write lock when it begins (``BEGIN IMMEDIATE``, waiting out the
        busy timeout): a transaction that read first and then writes is refused at once in WAL
        mode when another process committed in between, so several processes (two importers,
        a sync, the server) writing one catalog must begin their writes this way.
        """
        with self._writers() as db, db.begin():
            yield db

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(busy_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling commits each CREATE TABLE on its own, so a
        # kill during a migration would leave half a schema; SQLAlchemy emits BEGIN instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode keeps the database consistent after a crash; the last commits may
        # be rolled back on power loss, which the import redoes idempotently.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.close()

    return on_connect


def _catalog_errors(context: ExceptionContext) -> None:
    """The one boundary where database errors become picpipe's: every failure of the
    catalog's driver (a dropped connection, a failover, a busy timeout, a constraint) is a
    CatalogError, which no per-item handler catches, so no file is ever marked failed because
    the database blinked."""
    original = context.original_exception
    detail = str(original).splitlines()[0] if str(original) else type(original).__name__
    if isinstance(context.sqlalchemy_exception, DBAPIError) and not isinstance(
        context.sqlalchemy_exception, IntegrityError
    ):
        raise CatalogUnavailable(detail=detail) from context.sqlalchemy_exception
    raise CatalogError(detail=detail) from context.sqlalchemy_exception


IMMEDIATE = "picpipe_sqlite_immediate"


def _sqlite_begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_catalog_path(url: str) -> Path | None:
    """The file of a SQLite catalog URL; None for other databases and in-memory ones."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return Path(path) if path and path != ":memory:" else None


def private_sqlite_file(url: str) -> None:
    """Create a SQLite catalog's file mode 0600 before SQLite does (it would use the umask).

    The catalog holds source paths and destination names; others on the machine need not.
    Other URLs and existing files are left alone.
    """
    path = sqlite_catalog_path(url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def create_catalog_engine(url: str, *, busy_timeout: float = 30.0) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout (seconds).

    Every driver error on it is raised as a CatalogError (`_catalog_errors`).
    """
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": busy_timeout}, pool_size=16
        )
        event.listen(engine, "connect", _sqlite_pragmas(int(busy_timeout * 1000)))
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_size=16, max_overflow=8, pool_pre_ping=True)
    event.listen(engine, "handle_error", _catalog_errors)
    return engine


def open_catalog(url: str, *, migrate: bool = True, busy_timeout: float = 30.0) -> Catalog:
    """Open the catalog at ``url`` and bring its schema to the newest revision.

    Raises CatalogError (with the password masked) when the database cannot be reached.
    """
    try:
        engine = create_catalog_engine(url, busy_timeout=busy_timeout)
        if migrate:
            from picpipe.catalog.migrate import upgrade_to_head

            upgrade_to_head(engine)
    except CatalogError as exc:
        raise CatalogError(detail=f"{mask_url(url)}: {exc.fields.get('detail')}") from exc
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise CatalogError(detail=f"{mask_url(url)}: {detail}") from exc
    return Catalog(engine)
