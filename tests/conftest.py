"""Shared fixtures: a clean environment, real catalogs (SQLite and PostgreSQL), real libraries."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from picpipe.catalog.db import Catalog, open_catalog
from picpipe.cli.app import register_all
from picpipe.config import Settings, load_settings
from picpipe.events import EventSink
from picpipe.jobs.workflows import import_sources
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.runner import SessionSummary
from picpipe.sources.base import Source
from picpipe.sources.folder import FolderSource

# The console script loads only the command it runs; tests that drive `app` in process need
# every command there.
register_all()
# The real servers the destination tests talk to: session fixtures, one instance per run.
pytest_plugins = [
    "tests.servers.s3",
    "tests.servers.azurite",
    "tests.servers.samba",
    "tests.servers.immich",
]

PG_ADMIN_DSN = os.environ.get("PICPIPE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MEDIA = SHARED / "testdata" / "media"
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_report_header(config: pytest.Config) -> list[str]:
    tools = {name: shutil.which(name) or "missing" for name in ("exiftool", "openssl")}
    return [
        "tools: " + ", ".join(f"{k}={v}" for k, v in tools.items()),
        f"postgresql: {'reachable' if _pg_reachable() else 'NOT reachable'} ({PG_ADMIN_DSN})",
        f"shared media: {MEDIA if MEDIA.is_dir() else 'absent'}",
    ]


def missing(reason: str) -> None:
    """Skip locally when a real component is absent; fail in CI, where it must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def no_leftover_log_handlers() -> Iterator[None]:
    """A command run in-process (CliRunner) installs picpipe's log handler on its own captured
    stream; remove it afterwards, or later tests log into a closed file."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_picpipe", False):
            root.removeHandler(handler)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No PICPIPE_* from the developer's shell; HOME points into a temp folder."""
    for key in list(os.environ):
        if key.startswith("PICPIPE_") and key != "PICPIPE_TEST_PG":
            monkeypatch.delenv(key)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


def _pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    if not _pg_reachable():
        missing(f"PostgreSQL not reachable at {PG_ADMIN_DSN}")
    name = f"picpipe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog URL, once for each supported engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(scope="session")
def exiftool_available() -> None:
    if shutil.which("exiftool") is None:
        missing("exiftool is not installed (scripts/setup installs it)")


@dataclass
class LibraryFixture:
    """A real library: settings, an open catalog, and an import helper."""

    settings: Settings
    catalog: Catalog
    tools: ExifToolPool

    @property
    def root(self) -> Path:
        return self.settings.library_root

    def folder(self, path: Path, name: str | None = None) -> FolderSource:
        return FolderSource(name or str(path), path, self.settings.scan)

    def run(
        self,
        *sources: Source,
        move: bool = False,
        workers: int = 4,
        sinks: Sequence[EventSink] = (),
    ) -> SessionSummary:
        return import_sources(
            self.settings,
            self.catalog,
            sources,
            tools=self.tools,
            workers=workers,
            move=move,
            sinks=sinks,
        )

    def import_folder(self, path: Path, **kwargs: object) -> SessionSummary:
        return self.run(self.folder(path), **kwargs)  # type: ignore[arg-type]


@contextmanager
def open_library(tmp_path: Path, database_url: str | None = None) -> Iterator[LibraryFixture]:
    """A new library and catalog under ``tmp_path`` (fsync off: tests need no durability)."""
    settings = load_settings(
        home=tmp_path / "home",
        library=tmp_path / "library",
        database_url=database_url,
        **{"import": {"fsync": False}},
    )
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        yield LibraryFixture(settings, catalog, tools)
    finally:
        tools.close()
        catalog.close()


@pytest.fixture
def library(tmp_path: Path, catalog_url: str, exiftool_available: None) -> Iterator[LibraryFixture]:
    """A new library and catalog on each engine."""
    with open_library(tmp_path, catalog_url) as lib:
        yield lib


@pytest.fixture
def sqlite_library(tmp_path: Path, exiftool_available: None) -> Iterator[LibraryFixture]:
    """Like ``library`` but SQLite only, for tests about files rather than engines."""
    with open_library(tmp_path) as lib:
        yield lib


def tree_digest(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``root`` with size, mtime and content (to prove nothing changed)."""
    out: dict[str, tuple[int, int, bytes]] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            st = path.lstat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, path.read_bytes())
    return out


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `picpipe` console script in a subprocess."""
    exe = Path(os.sys.executable).with_name("picpipe")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=full_env,
        check=check,
        timeout=timeout,
    )


def running_session(db: Any, *, kind: str, device: str) -> Any:
    """A run marked running by this process (as a live import on this machine leaves it)."""
    import socket

    from picpipe.catalog.runs import Owner, begin_run

    owner = Owner.this_process(socket.gethostname())
    return begin_run(db, kind=kind, device=device, owner=owner, lease_seconds=60)
