"""Migrations run on start, on SQLite and PostgreSQL, and produce exactly the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Base

TABLES = {
    "asset",
    "source",
    "source_file",
    "session",
    "session_failure",
    "destination",
    "replica",
    "album",
    "album_asset",
}


def test_open_creates_every_table(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    try:
        assert set(inspect(catalog.engine).get_table_names()) >= TABLES
    finally:
        catalog.close()


def test_migrated_schema_matches_the_models(catalog_url: str) -> None:
    catalog = open_catalog(catalog_url)
    try:
        with catalog.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        catalog.close()


def test_opening_twice_is_a_no_op(catalog_url: str) -> None:
    open_catalog(catalog_url).close()
    catalog = open_catalog(catalog_url)
    try:
        with catalog.engine.connect() as conn:
            versions = conn.execute(text("select version_num from alembic_version")).all()
        assert len(versions) == 1
    finally:
        catalog.close()


def test_sqlite_uses_wal(tmp_path) -> None:  # type: ignore[no-untyped-def]
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with catalog.engine.connect() as conn:
            assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
            assert conn.execute(text("pragma foreign_keys")).scalar() == 1
    finally:
        catalog.close()


def test_unreachable_database_is_a_catalog_error_without_password() -> None:
    import pytest

    from picpipe.errors import CatalogError

    with pytest.raises(CatalogError) as caught:
        open_catalog("postgresql+psycopg://someone:s3cret@127.0.0.1:1/nothing")
    assert "s3cret" not in caught.value.message
    assert "someone:********@" in caught.value.message


def test_head_constant_matches_the_revision_scripts() -> None:
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from picpipe.catalog.migrate import HEAD, alembic_config

    assert (
        ScriptDirectory.from_config(alembic_config(create_engine("sqlite://"))).get_current_head()
        == HEAD
    )


def test_an_older_catalog_is_upgraded_and_keeps_its_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from alembic import command
    from sqlalchemy import create_engine

    from picpipe.catalog.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    command.upgrade(alembic_config(engine), "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into source (id, name, kind, location, created_at)"
                " values (1, 's', 'folder', '/', '2020-01-01')"
            )
        )
        conn.execute(
            text(
                "insert into source_file (source_id, ref, size, mtime_ns, state, retryable,"
                " first_seen, last_seen, gone) values"
                " (1, 'a/b/c.jpg', 1, 1, 'imported', 0, '2020-01-01', '2020-01-01', 0)"
            )
        )
    engine.dispose()
    catalog = open_catalog(url)
    try:
        with catalog.engine.connect() as conn:
            assert conn.execute(text("select folder from source_file")).scalar() == "a/b"
    finally:
        catalog.close()
