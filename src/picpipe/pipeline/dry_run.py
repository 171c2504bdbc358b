"""``import --dry-run``: what an import would read, without writing anything anywhere.

Each source is listed as the import lists it; a file the catalog already holds with the same
size, mtime and ctime is "unchanged", everything else "would be read" (the import then decides
new or duplicate by its hash). The catalog is only read; no session, no run, no library write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from picpipe.catalog.models import Source as SourceRow
from picpipe.catalog.queries import KnownFile, folder_files
from picpipe.pipeline.scan import unchanged
from picpipe.sources.base import ScanProblem

if TYPE_CHECKING:
    from picpipe.catalog.db import Catalog
    from picpipe.sources.base import Source


@dataclass(slots=True)
class ImportPlan:
    """What an import of some sources would do."""

    would_read: list[dict[str, Any]] = field(default_factory=list)  # source, ref, size
    unchanged: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # source, ref, reason
    problems: list[dict[str, str]] = field(default_factory=list)  # source, ref, reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": True,
            "would_read": self.would_read,
            "would_read_bytes": sum(item["size"] for item in self.would_read),
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "problems": self.problems,
        }


def plan_import(catalog: Catalog | None, sources: list[Source]) -> ImportPlan:
    """List ``sources`` and compare with the catalog (None: nothing imported yet)."""
    plan = ImportPlan()
    for source in sources:
        source_id = _source_id(catalog, source.name) if catalog is not None else None
        for item in source.listing():
            if isinstance(item, ScanProblem):
                plan.problems.append(
                    {"source": source.name, "ref": item.ref, "reason": item.reason}
                )
                continue
            known = _known(catalog, source_id, item.folder)
            for entry in item.entries:
                where = {"source": source.name, "ref": entry.ref}
                if entry.skipped is not None:
                    plan.skipped.append(where | {"reason": entry.skipped})
                elif unchanged(known.get(entry.ref), entry.size, entry.mtime_ns, entry.ctime_ns):
                    plan.unchanged += 1
                else:
                    plan.would_read.append(where | {"size": entry.size})
    return plan


def _source_id(catalog: Catalog, name: str) -> int | None:
    with catalog.session() as db:
        found = db.scalar(select(SourceRow.id).where(SourceRow.name == name))
    return int(found) if found is not None else None


def _known(catalog: Catalog | None, source_id: int | None, folder: str) -> dict[str, KnownFile]:
    if catalog is None or source_id is None:
        return {}
    with catalog.session() as db:
        return folder_files(db, source_id, folder)


__all__ = ["ImportPlan", "plan_import"]
