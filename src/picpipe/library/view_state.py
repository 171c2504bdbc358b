"""What the last view build left: ``<views>/.picpipe-views.json``, and what changed since.

The state records, per layout, each folder's digest (of its planned links) and link count,
the settings the views were built with (link kind, sidecar naming, templates) and a
`CatalogSignature` taken when the build began. `changed_day_folders` uses them to avoid
reading the whole catalog after an import that only added assets: when every configured
layout puts links in folders named by date alone (by-date's default), the settings are the
same and the catalog changed only by new rows (no asset left, paired up or gained a sidecar
meanwhile), only the day folders of the new assets need planning. Anything else is a full
build, which is always correct.
"""

from __future__ import annotations

import hashlib  # blake2b of a view folder's plan: a change marker, not content
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from picpipe.catalog.views import CatalogSignature, assets_imported_after
from picpipe.library.atomic import atomic_write_bytes
from picpipe.library.view_plan import folder_fields

if TYPE_CHECKING:
    from pathlib import Path

    from sqlalchemy.orm import Session

    from picpipe.library.view_plan import ViewLink

STATE_FILE = ".picpipe-views.json"
DATE_FIELDS = frozenset({"year", "month", "day"})
MAX_DAYS = 400  # an import spanning more days than this gets a full build
Folders = dict[str, list[Any]]  # folder → [digest, link count]


@dataclass(frozen=True, slots=True)
class BuildKey:
    """The settings a view depends on besides the catalog."""

    link: str
    naming: str
    templates: dict[str, str]  # layout → template, the configured layouts only

    def as_dict(self) -> dict[str, Any]:
        return {"link": self.link, "naming": self.naming, "templates": self.templates}


def changed_day_folders(
    db: Session, state: dict[str, Any], key: BuildKey, now: CatalogSignature
) -> set[str] | None:
    """The ``originals/YYYY/MM/DD`` folders of assets added since the last build, or None
    when the views need a full build (see the module docstring)."""
    before = state.get("signature")
    if not isinstance(before, dict) or state.get("key") != key.as_dict():
        return None
    if key.link != "symlink":  # hardlinked sidecars follow the sidecar's mtime: full builds
        return None
    if any(folder_fields(t) - DATE_FIELDS for t in key.templates.values()):
        return None
    if set(state.get("layouts", {})) != set(key.templates):
        return None
    last = before.get("last_import")
    if last is None or now.last_import is None:
        return None
    added = assets_imported_after(db, datetime.fromisoformat(last))
    expected = CatalogSignature(
        int(before["assets"]) + len(added),
        int(before["paired"]) + sum(a.pair_id is not None for a in added),
        int(before["with_sidecar"]) + sum(a.sidecar_mtime_ns is not None for a in added),
        now.last_import if added else last,
    )
    folders = {a.library_path.rsplit("/", 1)[0] for a in added}
    if expected != now or len(folders) > MAX_DAYS or any(f.count("/") != 3 for f in folders):
        return None
    return folders


def folder_digest(mode: str, links: list[ViewLink]) -> str:
    h = hashlib.blake2b(mode.encode(), digest_size=16)
    for link in links:
        stamp = link.sidecar_stamp if mode == "hardlink" else None
        h.update(f"\n{link.name}\0{link.target}\0{link.sidecar}\0{stamp}".encode())
    return h.hexdigest()


def discover(base: Path) -> Folders:
    """Folders holding files under a layout with no record: each to be rebuilt or removed."""
    found: Folders = {}
    if not base.is_dir():
        return found
    for folder, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(".picpipe-")]
        if files:
            rel = os.path.relpath(folder, base)
            found["" if rel == "." else rel.replace(os.sep, "/")] = ["", 0]
    return found


def load_state(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(
    root: Path, key: BuildKey, signature: CatalogSignature | None, layouts: dict[str, Folders]
) -> None:
    """Write the state atomically. ``signature`` None (mid-build): the next build is full."""
    state = {
        "key": key.as_dict(),
        "link": key.link,
        "signature": signature.as_dict() if signature is not None else None,
        "layouts": layouts,
    }
    atomic_write_bytes(root / STATE_FILE, json.dumps(state, sort_keys=True).encode(), fsync=False)
