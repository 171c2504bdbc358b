"""The library knows itself: a marker file in its root names the library and its catalog.

``init`` (and the first write to a new library) writes ``.picpipe-library.json`` with the
library id, the catalog id and when it was created; the catalog stores the same library id.
Every command that writes checks it before touching anything, so a library on a NAS that is
not mounted — the folder missing, or an empty mount point — is a one-line error (exit 6),
never a fresh library quietly started on the local disk; and a catalog pointed at another
catalog's library is refused.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from picpipe.catalog.library_info import catalog_fact, has_assets, set_catalog_fact_once
from picpipe.errors import LibraryMismatch, LibraryMissing, LibraryUnwritable
from picpipe.library.atomic import atomic_write_bytes
from picpipe.library.layout import ORIGINALS

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.catalog.db import Catalog

MARKER = ".picpipe-library.json"
# The marker's temp name is fixed (see _write_marker): two threads of one process creating a
# new library at once (the service's watchers' first passes) would rename each other's temp
# file away. One at a time per process; the second then finds the marker written.
_MARKER_WRITE = threading.Lock()


@dataclass(frozen=True, slots=True)
class LibraryIdentity:
    library_id: str
    catalog_id: str
    created: str


def read_marker(root: Path) -> LibraryIdentity | None:
    """The marker in ``root``, or None when there is none (or it cannot be read as one)."""
    try:
        data: dict[str, Any] = json.loads((root / MARKER).read_text(encoding="utf-8"))
        return LibraryIdentity(
            str(data["library_id"]), str(data["catalog_id"]), str(data["created"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def library_problem(root: Path, catalog: Catalog) -> str | None:
    """Why the library at ``root`` cannot be used with this catalog now (None: it can).

    Reads only: `status` and ``/health`` say the same as the commands that refuse.
    """
    try:
        refuse_missing_library(root, catalog)
    except (LibraryMissing, LibraryMismatch) as exc:
        return exc.message
    return None


def refuse_missing_library(root: Path, catalog: Catalog) -> None:
    """For commands that read the library (sync, thumbnails, serving): raise the problem."""
    marker = read_marker(root)
    with catalog.session() as db:
        _refuse(root, marker, catalog_fact(db, "library_id"), has_assets(db))


def ensure_library(root: Path, catalog: Catalog) -> LibraryIdentity:
    """Check the library before a command writes to it; create or adopt it when that is safe.

    Raises LibraryMissing when the catalog holds assets and ``root`` is missing or empty (an
    unmounted NAS: nothing is created then), LibraryMismatch when the marker names another
    catalog's library, LibraryUnwritable when the marker cannot be written. A new library (an
    empty catalog), or one from before markers (originals there, no marker), gets its marker
    now. A library already known by its marker costs one read, no write.
    """
    marker = read_marker(root)
    with catalog.session() as db:
        known = catalog_fact(db, "library_id")
        _refuse(root, marker, known, has_assets(db))
        settled = catalog_fact(db, "catalog_id") is not None
    if marker is not None and settled and known == marker.library_id:
        return marker
    with _MARKER_WRITE:
        return _create_or_adopt(root, catalog)


def _create_or_adopt(root: Path, catalog: Catalog) -> LibraryIdentity:
    marker = read_marker(root)  # again: another thread may have written it meanwhile
    with catalog.write() as db:
        known = catalog_fact(db, "library_id")
        _refuse(root, marker, known, has_assets(db))
        catalog_id = set_catalog_fact_once(db, "catalog_id", uuid.uuid4().hex)
        wanted = marker.library_id if marker is not None else known or uuid.uuid4().hex
        library_id = set_catalog_fact_once(db, "library_id", wanted)
    if marker is not None:
        return marker
    identity = LibraryIdentity(
        library_id, catalog_id, datetime.now(UTC).replace(microsecond=0).isoformat()
    )
    _write_marker(root, identity)
    return identity


def adopt_library(root: Path, catalog: Catalog) -> tuple[LibraryIdentity | None, str]:
    """After a catalog was restored: make the library's marker name the catalog's library.

    Returns (the identity, what happened): "matches" (the marker names it already), "adopted"
    (no marker: one written, creating the root folder when its parent exists), "not written"
    (neither the root nor its parent exists: a share that is not mounted gets nothing).
    Raises LibraryMismatch when the marker names another library.
    """
    with catalog.session() as db:
        library_id = catalog_fact(db, "library_id")
        catalog_id = catalog_fact(db, "catalog_id")
    if library_id is None or catalog_id is None:
        with catalog.write() as db:
            catalog_id = set_catalog_fact_once(db, "catalog_id", catalog_id or uuid.uuid4().hex)
            library_id = set_catalog_fact_once(db, "library_id", library_id or uuid.uuid4().hex)
    marker = read_marker(root)
    if marker is not None:
        if marker.library_id != library_id:
            raise LibraryMismatch(root=str(root), found=marker.library_id, known=library_id)
        return marker, "matches"
    if not root.is_dir() and not root.parent.is_dir():
        return None, "not written"
    identity = LibraryIdentity(
        library_id, catalog_id, datetime.now(UTC).replace(microsecond=0).isoformat()
    )
    _write_marker(root, identity)
    return identity, "adopted"


def _refuse(root: Path, marker: LibraryIdentity | None, known: str | None, assets: bool) -> None:
    if marker is not None and known is not None and marker.library_id != known:
        raise LibraryMismatch(root=str(root), found=marker.library_id, known=known)
    # A catalog with assets and no library in sight: an unmounted NAS. (Without assets there
    # is nothing to split, and another process may be creating the library right now.)
    if marker is None and assets and not _holds_originals(root):
        raise LibraryMissing(root=str(root))


def _holds_originals(root: Path) -> bool:
    """A library that was used: its ``originals`` folder has something in it."""
    try:
        with os.scandir(root / ORIGINALS) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _write_marker(root: Path, identity: LibraryIdentity) -> None:
    data = {
        "library_id": identity.library_id,
        "catalog_id": identity.catalog_id,
        "created": identity.created,
        "written_by": "picpipe",
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        # A fixed temp name: one left by a kill is overwritten by the next write, never orphaned
        # in the library root (where no sweep looks).
        text = (json.dumps(data, indent=2) + "\n").encode()
        atomic_write_bytes(root / MARKER, text, fsync=True, middle="library-marker")
    except OSError as exc:
        raise LibraryUnwritable(root=str(root), detail=exc.strerror or str(exc)) from exc
