"""Insert-or-get writes that hold under concurrency: ``INSERT … ON CONFLICT`` for SQLite and
PostgreSQL (both have it), instead of a check followed by an insert that two runs can race."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects import postgresql, sqlite

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session


def _insert(db: Session, model: Any) -> Any:
    dialect = db.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"no ON CONFLICT support for {dialect}")  # pragma: no cover


def insert_ignore(
    db: Session, model: Any, rows: Sequence[dict[str, Any]], *, conflict: Sequence[str]
) -> int:
    """Insert ``rows``; a row whose ``conflict`` columns already exist is left as it is.

    Returns how many rows were inserted (0 for one row means: someone else's row is there).
    """
    if not rows:
        return 0
    # RETURNING says which rows went in: drivers report no row count for ON CONFLICT inserts
    # (psycopg gives -1), and the ORM's bulk-insert path reports none at all.
    key = getattr(model, conflict[0])
    return len(insert_returning_new(db, model, rows, conflict=conflict, key=key))


def insert_returning_new(
    db: Session, model: Any, rows: Sequence[dict[str, Any]], *, conflict: Sequence[str], key: Any
) -> set[Any]:
    """Insert ``rows`` ignoring conflicts; returns the ``key`` values of the rows inserted now."""
    if not rows:
        return set()
    statement = (
        _insert(db, model).on_conflict_do_nothing(index_elements=list(conflict)).returning(key)
    )
    connection = db.connection()
    found: set[Any] = set()
    for row in rows:
        found.update(connection.execute(statement, row).scalars())
    return found


def upsert(
    db: Session,
    model: Any,
    values: dict[str, Any],
    *,
    conflict: Sequence[str],
    update: dict[str, Any],
) -> None:
    """Insert ``values``, or update ``update`` on the row whose ``conflict`` columns match."""
    statement = _insert(db, model).values(**values)
    statement = statement.on_conflict_do_update(index_elements=list(conflict), set_=update)
    db.connection().execute(statement)
