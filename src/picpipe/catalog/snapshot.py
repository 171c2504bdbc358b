"""Consistent snapshots of the catalog, and a catalog rebuilt from one.

SQLite: the ``sqlite3`` online backup API copies the database page by page under its own read
transaction (a consistent picture while imports and syncs go on), then the copy loses its login
sessions and is vacuumed so no freed page keeps them. PostgreSQL: every picpipe table read in
one REPEATABLE READ transaction, written as JSON lines. Both are gzip files; login sessions are
never in a snapshot (``web_session`` holds only hashes, but a backup has no use for them).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, func, insert, select, text

from picpipe.catalog.migrate import HEAD, current_revision
from picpipe.catalog.models import Asset, Base, CatalogInfo
from picpipe.errors import CatalogError
from picpipe.library.atomic import rename_over

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.engine import Connection, Engine

    from picpipe.catalog.db import Catalog

EXCLUDED = frozenset({"web_session"})  # login sessions: never in a snapshot
JSON_FORMAT = "picpipe-catalog-json"
BATCH = 2000


@dataclass(frozen=True, slots=True)
class SnapshotFacts:
    """What ``latest.json`` says about a snapshot besides where it is and its hash."""

    format: str  # sqlite | json
    revision: str
    catalog_id: str | None
    library_id: str | None
    assets: int


def sqlite_file(catalog: Catalog) -> Path | None:
    """The database file of a SQLite catalog (None for PostgreSQL or an in-memory one)."""
    from pathlib import Path

    if catalog.dialect != "sqlite":
        return None
    name = catalog.engine.url.database
    return Path(name) if name and name != ":memory:" else None


def export_snapshot(catalog: Catalog, folder: Path) -> tuple[Path, SnapshotFacts]:
    """Write a gzip snapshot of ``catalog`` into ``folder``; returns its path and facts."""
    database = sqlite_file(catalog)
    if database is not None:
        return _export_sqlite(database, folder)
    return _export_json(catalog.engine, folder)


def _export_sqlite(database: Path, folder: Path) -> tuple[Path, SnapshotFacts]:
    copy = folder / "catalog.sqlite"
    source = sqlite3.connect(database)  # reads only; the backup holds one read transaction
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
        for table in EXCLUDED:
            target.execute(f"DELETE FROM {table}")
        target.commit()
        target.execute("VACUUM")
        facts = _sqlite_facts(target)
    finally:
        target.close()
        source.close()
    packed = folder / "catalog.sqlite.gz"
    with open(copy, "rb") as raw, gzip.open(packed, "wb", compresslevel=6) as out:
        shutil.copyfileobj(raw, out, 1 << 20)
    copy.unlink()
    return packed, facts


def _sqlite_facts(db: sqlite3.Connection) -> SnapshotFacts:
    revision = db.execute("select version_num from alembic_version").fetchone()
    found = dict(db.execute("select key, value from catalog_info").fetchall())
    assets = db.execute("select count(*) from asset").fetchone()[0]
    return SnapshotFacts(
        "sqlite", str(revision[0]), found.get("catalog_id"), found.get("library_id"), int(assets)
    )


def _export_json(engine: Engine, folder: Path) -> tuple[Path, SnapshotFacts]:
    packed = folder / "catalog.json.gz"
    with (
        engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
        conn.begin(),
        gzip.open(packed, "wt", encoding="utf-8", compresslevel=6) as out,
    ):
        revision = str(conn.execute(text("select version_num from alembic_version")).scalar())
        facts_rows = dict(conn.execute(select(CatalogInfo.key, CatalogInfo.value)).all())
        assets = int(conn.execute(select(func.count()).select_from(Asset)).scalar() or 0)
        facts = SnapshotFacts(
            "json", revision, facts_rows.get("catalog_id"), facts_rows.get("library_id"), assets
        )
        out.write(json.dumps({"format": JSON_FORMAT, "revision": revision}) + "\n")
        for table in Base.metadata.sorted_tables:
            if table.name in EXCLUDED:
                continue
            columns = [c.name for c in table.columns]
            out.write(json.dumps({"table": table.name, "columns": columns}) + "\n")
            # A server-side cursor: a big table streams instead of filling memory.
            for row in conn.execute(select(table).execution_options(yield_per=BATCH)):
                out.write(json.dumps(list(row), default=_plain) + "\n")
    return packed, facts


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


# -- restore --------------------------------------------------------------------------------


def restore_sqlite_file(snapshot: Path, database: Path) -> None:
    """Put the SQLite snapshot (gzip) in place of ``database``; migrations run at next open."""
    temp = database.with_name(f".{database.name}.restoring")
    with gzip.open(snapshot, "rb") as packed, open(temp, "wb") as out:
        shutil.copyfileobj(packed, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temp, 0o600)
    check = sqlite3.connect(temp)
    try:
        ok = check.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        ok = str(exc)
    finally:
        check.close()
    if ok != "ok":
        temp.unlink(missing_ok=True)
        raise CatalogError(detail=f"the snapshot is not a sound SQLite database ({ok})")
    for leftover in ("-wal", "-shm", "-journal"):
        database.with_name(database.name + leftover).unlink(missing_ok=True)
    rename_over(temp, database, fsync=True)


def snapshot_revision(snapshot: Path) -> str:
    """The schema revision a JSON snapshot was taken at (its first line)."""
    with gzip.open(snapshot, "rt", encoding="utf-8") as lines:
        head = json.loads(lines.readline() or "{}")
    if head.get("format") != JSON_FORMAT:
        raise CatalogError(detail="not a picpipe catalog snapshot (JSON)")
    return str(head.get("revision"))


def load_json_snapshot(engine: Engine, snapshot: Path) -> int:
    """Load a JSON snapshot into an empty catalog at its revision; returns the rows loaded.

    One transaction: a snapshot that fails half-way leaves the catalog empty, never half full.
    """
    from alembic import command

    from picpipe.catalog.migrate import alembic_config

    revision = snapshot_revision(snapshot)
    if revision > HEAD:
        raise CatalogError(detail=f"the snapshot is from a newer picpipe (schema {revision})")
    command.upgrade(alembic_config(engine), revision)
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    loaded = 0
    with engine.begin() as conn, gzip.open(snapshot, "rt", encoding="utf-8") as lines:
        lines.readline()
        table: Any = None
        columns: list[str] = []
        batch: list[dict[str, Any]] = []
        for line in lines:
            item = json.loads(line)
            if isinstance(item, dict):
                loaded += _flush(conn, table, batch)
                table, columns = tables[item["table"]], list(item["columns"])
                continue
            batch.append(_typed(table, dict(zip(columns, item, strict=True))))
            if len(batch) >= BATCH:
                loaded += _flush(conn, table, batch)
        loaded += _flush(conn, table, batch)
        if conn.dialect.name == "postgresql":
            _reset_sequences(conn)
    return loaded


def _typed(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    for column in table.columns:
        value = row.get(column.name)
        if isinstance(column.type, DateTime) and isinstance(value, str):
            row[column.name] = datetime.fromisoformat(value)
    return row


def _flush(conn: Connection, table: Any, batch: list[dict[str, Any]]) -> int:
    if table is None or not batch:
        return 0
    conn.execute(insert(table), batch)
    count = len(batch)
    batch.clear()
    return count


def _reset_sequences(conn: Connection) -> None:
    """Rows came with their ids: the id sequences continue after the highest one."""
    for table in Base.metadata.sorted_tables:
        if "id" in table.columns and table.columns["id"].autoincrement is not False:
            conn.execute(
                text(
                    f"select setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"coalesce((select max(id) from {table.name}), 0) + 1, false)"
                )
            )


def catalog_revision(engine: Engine) -> str | None:
    return current_revision(engine)
