"""``picpipe restore-catalog FROM``: rebuild the catalog from a destination's latest snapshot.

Nothing is changed until the snapshot is downloaded and its SHA-256 matches ``latest.json``, the
catalog in place is known to hold no assets (or ``--force``), and the library's marker (if any)
names the snapshot's library. A SQLite catalog is replaced by the snapshot file in one rename
(a JSON snapshot is loaded into a new file first); PostgreSQL loads the JSON in one transaction.
Migrations then bring the schema to this picpipe's revision, and the library gets its marker.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, inspect, select, text

from picpipe.catalog.db import create_catalog_engine, open_catalog
from picpipe.catalog.models import Asset, Base, Destination, Replica, SidecarReplica
from picpipe.catalog.snapshot import load_json_snapshot, restore_sqlite_file
from picpipe.config import mask_url
from picpipe.errors import CatalogError, CatalogNotEmpty, IntegrityMismatch, LibraryMismatch
from picpipe.jobs.catalog_backup import LATEST, fetch_snapshot, read_pointer
from picpipe.library.atomic import rename_over
from picpipe.library.marker import adopt_library, read_marker

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from picpipe.destinations.base import Destination as Backend


@dataclass(slots=True)
class RestoreReport:
    source: str
    snapshot: str
    created: str
    format: str
    assets: int = 0
    replicas: int = 0
    sidecar_replicas: int = 0
    destinations: list[str] = field(default_factory=list)
    library_marker: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "snapshot": self.snapshot,
            "created": self.created,
            "format": self.format,
            "assets": self.assets,
            "replicas": self.replicas,
            "sidecar_replicas": self.sidecar_replicas,
            "destinations": self.destinations,
            "library_marker": self.library_marker,
        }


def restore_catalog(
    backend: Backend, catalog_url: str, library_root: Path, *, force: bool = False
) -> RestoreReport:
    """Restore the catalog at ``catalog_url`` from ``backend``'s latest snapshot."""
    try:
        pointer = read_pointer(backend)
    except IntegrityMismatch as exc:
        if exc.fields.get("detail") == "missing":
            raise CatalogError(
                detail=f"{backend.name} holds no catalog snapshot ({LATEST} is missing)"
            ) from None
        raise
    held = _assets_in(catalog_url)
    if held and not force:
        raise CatalogNotEmpty(url=mask_url(catalog_url), assets=held)
    marker = read_marker(library_root)
    if marker is not None and pointer.library_id and marker.library_id != pointer.library_id:
        raise LibraryMismatch(
            root=str(library_root), found=marker.library_id, known=pointer.library_id
        )
    sqlite_path = _sqlite_path(catalog_url)
    if pointer.format == "sqlite" and sqlite_path is None:
        raise CatalogError(
            detail="this snapshot is a SQLite catalog; restore it into a SQLite catalog "
            "(a PostgreSQL catalog's snapshots are JSON)"
        )
    with tempfile.TemporaryDirectory(prefix="picpipe-restore-") as folder:
        packed = Path(folder) / pointer.key.rpartition("/")[2]
        fetch_snapshot(backend, pointer, packed)
        if sqlite_path is not None:
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            if pointer.format == "sqlite":
                restore_sqlite_file(packed, sqlite_path)
            else:
                _json_into_sqlite(packed, sqlite_path)
        else:
            _json_into_server(packed, catalog_url)
    catalog = open_catalog(catalog_url)  # migrations: the snapshot may be older than picpipe
    try:
        report = RestoreReport(backend.name, pointer.key, pointer.created, pointer.format)
        with catalog.session() as db:
            report.assets = int(db.scalar(select(func.count()).select_from(Asset)) or 0)
            report.replicas = int(
                db.scalar(
                    select(func.count()).select_from(Replica).where(Replica.state == "verified")
                )
                or 0
            )
            report.sidecar_replicas = int(
                db.scalar(select(func.count()).select_from(SidecarReplica)) or 0
            )
            report.destinations = list(db.scalars(select(Destination.name).order_by("name")))
        _identity, report.library_marker = adopt_library(library_root, catalog)
    finally:
        catalog.close()
    return report


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    name = url.split("///", 1)[-1]
    return Path(name) if name and name != ":memory:" else None


def _assets_in(url: str) -> int:
    """Assets in the catalog at ``url`` now (0 when it does not exist or has no schema)."""
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        return 0
    engine = create_catalog_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("asset"):
                return 0
            return int(conn.execute(select(func.count()).select_from(Asset)).scalar() or 0)
    finally:
        engine.dispose()


def _json_into_sqlite(packed: Path, database: Path) -> None:
    """Load into a new file beside the catalog, then one rename: never half a catalog."""
    temp = database.with_name(f".{database.name}.restoring")
    for leftover in ("", "-wal", "-shm"):
        Path(f"{temp}{leftover}").unlink(missing_ok=True)
    engine = create_catalog_engine(f"sqlite:///{temp}")
    try:
        load_json_snapshot(engine, packed)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    temp.chmod(0o600)
    for leftover in ("-wal", "-shm", "-journal"):
        Path(f"{database}{leftover}").unlink(missing_ok=True)
        Path(f"{temp}{leftover}").unlink(missing_ok=True)
    rename_over(temp, database, fsync=True)


def _json_into_server(packed: Path, url: str) -> None:
    engine = create_catalog_engine(url)
    try:
        _drop_everything(engine)
        load_json_snapshot(engine, packed)
    finally:
        engine.dispose()


def _drop_everything(engine: Engine) -> None:
    """--force on a server catalog: its tables go before the snapshot's are created."""
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
