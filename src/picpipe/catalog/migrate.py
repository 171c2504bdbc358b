"""Run the Alembic migrations programmatically (on every start; a no-op when current).

Every command opens the catalog, so the common case (already at ``HEAD``) is answered with one
query, without loading Alembic and its revision scripts; a test keeps ``HEAD`` honest.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")
HEAD = "0016"
# Alembic's `context` is a process-wide proxy: two threads migrating at once (the sources of
# `picpipe watch` opening their catalogs) break each other's run.
_MIGRATING = threading.Lock()


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("select version_num from alembic_version")).scalar()


def upgrade_to_head(engine: Engine) -> None:
    """Apply every pending revision (nothing to do when the catalog is at ``HEAD``)."""
    if current_revision(engine) == HEAD:
        return
    from alembic import command

    with _MIGRATING:
        if current_revision(engine) != HEAD:  # another thread may have just done it
            command.upgrade(alembic_config(engine), "head")
