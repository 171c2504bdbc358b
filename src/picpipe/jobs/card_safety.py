"""Is a card safe to format? The check every card session ends with.

A card is safe only when a fresh re-scan of it, compared with the catalog, shows that every
file on it:
- was read from the card and content-hashed (imported, or found a duplicate of an asset),
  with the same size and mtime now as when it was read (nothing new or changed since);
- is in the library (the asset's original is there);
- has at least ``safe_replicas`` verified copies, the library's original counted as one when
  ``library_counts`` is on (it was re-hashed after placement, `library/writer.py`), plus every
  destination holding a replica verified at the far end;
- had no read error, and was not skipped, unless it is disposable by rule (``.THM``/``.LRV``
  proxies, camera bookkeeping, file-system litter: `sources/removable.py`).
Any problem of the re-scan itself (a folder that cannot be read) also blocks. Every reason is
kept, one per file, so ``picpipe cards`` can say what keeps the card from being safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from picpipe.catalog.cards import card_files, library_paths, verified_replicas
from picpipe.sources.base import ScanProblem, iter_entries

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.sources.removable import RemovableSource

READ_STATES = ("imported", "duplicate")


@dataclass(slots=True)
class SafetyReport:
    """The outcome of the check: how many files, which ones block (path, reason)."""

    files: int = 0
    disposable: int = 0
    blocking: list[dict[str, str]] = field(default_factory=list)

    @property
    def safe(self) -> bool:
        return not self.blocking  # an empty card holds nothing to lose

    def block(self, path: str, reason: str) -> None:
        self.blocking.append({"path": path, "reason": reason})


def check_card(
    catalog: Catalog,
    source: RemovableSource,
    catalog_source: str,
    *,
    library_root: Path,
    safe_replicas: int,
    library_counts: bool = True,
) -> SafetyReport:
    """Re-scan the card and judge it (reads no file content; see the module docstring)."""
    report = SafetyReport()
    with catalog.session() as db:
        known = card_files(db, catalog_source)
    to_check: dict[str, list[str]] = {}
    for item in iter_entries(source):
        if isinstance(item, ScanProblem):
            report.block(item.ref, f"cannot be read: {item.reason}")
            continue
        report.files += 1
        row = known.get(item.ref)
        if row is None:
            report.block(item.ref, "new on the card since it was read")
        elif (row.size, row.mtime_ns) != (item.size, item.mtime_ns):
            report.block(item.ref, "changed on the card since it was read")
        elif row.state == "skipped":
            if source.disposable(item.ref):
                report.disposable += 1
            else:
                why = row.error or item.skipped or "not imported"
                report.block(item.ref, f"skipped: {why}")
        elif row.state == "failed":
            error = (row.error or "failed").removeprefix(f"{catalog_source}:")
            report.block(item.ref, f"read error: {error.removeprefix(f'{item.ref}: ')}")
        elif row.state not in READ_STATES or row.sha256 is None:
            report.block(item.ref, "not read from the card yet")
        else:
            to_check.setdefault(row.sha256, []).append(item.ref)
    _check_copies(catalog, report, to_check, library_root, safe_replicas, library_counts)
    return report


def _check_copies(
    catalog: Catalog,
    report: SafetyReport,
    to_check: dict[str, list[str]],
    library_root: Path,
    safe_replicas: int,
    library_counts: bool,
) -> None:
    shas = sorted(to_check)
    with catalog.session() as db:
        paths = library_paths(db, shas)
        replicas = verified_replicas(db, shas)
    for sha in shas:
        in_library = sha in paths and os.path.isfile(library_root / paths[sha])
        copies = replicas.get(sha, 0) + (1 if in_library and library_counts else 0)
        for ref in to_check[sha]:
            if not in_library:
                report.block(ref, f"not in the library ({sha[:12]})")
            elif copies < safe_replicas:
                counted = " (library counted)" if library_counts else ""
                report.block(ref, f"{copies} verified copies of {safe_replicas} needed{counted}")
