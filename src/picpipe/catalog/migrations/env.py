"""Alembic environment: the engine comes from ``picpipe.catalog.migrate``, never from an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from picpipe.catalog.models import Base

engine = context.config.attributes["engine"]
# Any number to name picpipe's migration lock on a PostgreSQL server.
PG_MIGRATION_LOCK = 0x70696370  # "picp"

with engine.begin() as connection:
    # Two processes starting on a fresh catalog must not both create the schema: the second
    # waits for the first, then finds every revision applied.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})"))
    elif connection.dialect.name == "sqlite":
        # Take the write lock now (waiting out the busy timeout), not on the first write of
        # a transaction that began reading: WAL refuses that upgrade at once.
        connection.execute(text("CREATE TABLE IF NOT EXISTS _picpipe_migrating (x INTEGER)"))
        connection.execute(text("DROP TABLE _picpipe_migrating"))
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
