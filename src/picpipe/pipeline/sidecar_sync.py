"""Library-wide sidecar passes: read back sidecars that changed, write missing ones.

A pass walks the catalog in pages and stats two names per asset: picpipe's ``<sha256>.xmp``
and ``<sha256>.<ext>.xmp`` (the name darktable, and digiKam with its default settings, give
a sidecar). A sidecar is read only when its mtime differs from ``asset.sidecar_mtime_ns``,
the mtime picpipe last wrote or read (the newer of the two files when both exist).
``sidecar_mtime_ns`` NULL means picpipe never settled this asset's sidecar: `write` writes
those, and anything that changes picpipe's own facts of an asset should reset it to NULL.

When both files exist, the user fields come from the more recently changed one, and the
other fills the fields it lacks. picpipe writes the names ``sidecars.naming`` asks for
(`layout.written_sidecar_paths`: ``<sha256>.xmp`` by default) and reads both, whichever a
tool wrote; a name it does not write is read only.

Passes hold no lease themselves: `picpipe sidecars` runs them in a leased "sidecars" run, an
ingest inside its own run.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picpipe.catalog.queries import (
    asset_provenance,
    assets_by_sha,
    sidecar_refs,
    update_sidecar_fields,
)
from picpipe.errors import LibraryError, SidecarError
from picpipe.jobs.report import RunReport
from picpipe.library.layout import ORIGINALS, sidecar_path, written_sidecar_paths
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.sidecar import (
    SidecarFacts,
    UserFields,
    alternate_sidecar_path,
    read_sidecar,
    write_sidecar,
)

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.catalog.models import Asset
    from picpipe.catalog.queries import SidecarRef
    from picpipe.config import Settings

log = logging.getLogger(__name__)

_PAGE = 1000


@dataclass(slots=True)
class SidecarReport:
    """What one pass found and did; ``picpipe sidecars --json`` prints this."""

    assets: int = 0
    present: int = 0  # assets with a sidecar under either name
    missing: int = 0  # assets with none
    changed: int = 0  # changed since picpipe last wrote or read it (or never settled)
    reimported: int = 0
    written: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def report(self, run_id: int | None) -> RunReport:
        """The shared run report of a `picpipe sidecars` pass (``run_id`` None: read only)."""
        counts = {"reimported": self.reimported, "written": self.written, "failed": self.failed}
        status = "completed_with_failures" if self.failed else "completed"
        return RunReport("sidecars", run_id, status, counts, 0, self.failures, [], self.seconds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "assets": self.assets,
            "present": self.present,
            "missing": self.missing,
            "changed": self.changed,
            "reimported": self.reimported,
            "written": self.written,
            "failed": self.failed,
            "failures": self.failures,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class _Job:
    ref: SidecarRef
    canonical_ns: int | None  # mtime of <sha256>.xmp before the pass touched it
    alternate_ns: int | None  # mtime of <sha256>.<ext>.xmp
    facts: SidecarFacts | None = None  # set: (re)write <sha256>.xmp from these
    catalog_user: UserFields = field(default_factory=UserFields)


def reimport_changed_sidecars(
    settings: Settings, catalog: Catalog, *, tools: ExifToolPool | None = None
) -> SidecarReport:
    """Read every sidecar that changed since picpipe last saw it into the catalog.

    One or two stats per asset; only changed sidecars are read. Item problems (a damaged
    sidecar) are in the report's failures; raises LibraryError when the library is not
    reachable. The import command calls this after a session.
    """
    return sync_sidecars(settings, catalog, reimport=True, tools=tools)


def sync_sidecars(
    settings: Settings,
    catalog: Catalog,
    *,
    reimport: bool = False,
    write: bool = False,
    rewrite_all: bool = False,
    tools: ExifToolPool | None = None,
) -> SidecarReport:
    """One pass over every asset: count, and optionally read back and (re)write sidecars.

    ``reimport`` reads changed sidecars into the catalog. ``write`` writes the sidecars that
    are missing or never settled (after turning ``sidecars.write`` on); with
    ``rewrite_all`` every sidecar is rewritten, refreshing picpipe's fields (provenance of
    every copy seen since). Writing merges: nothing another tool wrote is lost, and the user
    fields found on the way go to the catalog. Neither flag: a report that reads nothing.
    """
    started = time.monotonic()
    root = settings.library_root
    report = SidecarReport()
    pool = tools or ExifToolPool()
    try:
        with ThreadPoolExecutor(max_workers=settings.workers) as executor:
            after = ""
            while True:
                with catalog.session() as db:
                    refs = sidecar_refs(db, after=after, limit=_PAGE)
                if not refs:
                    break
                if after == "" and not (root / ORIGINALS).is_dir():
                    raise LibraryError(detail=f"library root {root} has no originals/ folder")
                after = refs[-1].sha256
                jobs = _plan(catalog, root, refs, report, (reimport, write, rewrite_all), settings)
                results = executor.map(lambda job: _settle(pool, root, job, settings), jobs)
                updates = []
                for job, result in zip(jobs, results, strict=True):
                    if isinstance(result, SidecarError):
                        _fail(report, result)
                        continue
                    user, mtime_ns = result
                    updates.append(user.catalog_values() | {"sha256": job.ref.sha256})
                    updates[-1]["sidecar_mtime_ns"] = mtime_ns
                    if job.facts is not None:
                        report.written += 1
                    else:
                        report.reimported += 1
                with catalog.write() as db:
                    update_sidecar_fields(db, updates)
    finally:
        if tools is None:
            pool.close()
    report.seconds = time.monotonic() - started
    log.info(
        "sidecars: %d assets, %d missing, %d changed; %d re-imported, %d written, %d failed",
        report.assets,
        report.missing,
        report.changed,
        report.reimported,
        report.written,
        report.failed,
    )
    return report


def _plan(
    catalog: Catalog,
    root: Path,
    refs: list[SidecarRef],
    report: SidecarReport,
    what: tuple[bool, bool, bool],  # reimport, write, rewrite_all
    settings: Settings,
) -> list[_Job]:
    """Stat each asset's sidecars, count them, and decide what to do (main thread)."""
    reimport, write, rewrite_all = what
    jobs: list[_Job] = []
    to_write: list[_Job] = []
    for ref in refs:
        report.assets += 1
        try:
            canonical = _mtime_ns(root / sidecar_path(ref.library_path))
            alternate = _mtime_ns(root / alternate_sidecar_path(ref.library_path))
        except OSError as exc:
            _fail(report, SidecarError(path=sidecar_path(ref.library_path), detail=str(exc)))
            continue
        newest = max((t for t in (canonical, alternate) if t is not None), default=None)
        if newest is None:
            report.missing += 1
        else:
            report.present += 1
        changed = newest is not None and newest != ref.sidecar_mtime_ns
        report.changed += changed
        job = _Job(ref, canonical, alternate)
        names = written_sidecar_paths(ref.library_path, settings.sidecars.naming)
        absent = any(
            (canonical if name == sidecar_path(ref.library_path) else alternate) is None
            for name in names
        )
        if write and (absent or ref.sidecar_mtime_ns is None or rewrite_all):
            to_write.append(job)
        elif reimport and changed:
            jobs.append(job)
    if to_write:
        jobs += _with_facts(catalog, to_write)
    return jobs


def _with_facts(catalog: Catalog, jobs: list[_Job]) -> list[_Job]:
    shas = [job.ref.sha256 for job in jobs]
    with catalog.session() as db:
        assets = assets_by_sha(db, shas)
        provenance = asset_provenance(db, shas)
        return [
            _Job(
                job.ref,
                job.canonical_ns,
                job.alternate_ns,
                facts_of(assets[job.ref.sha256], provenance.get(job.ref.sha256, [])),
                UserFields.from_values(vars_of(assets[job.ref.sha256])),
            )
            for job in jobs
            if job.ref.sha256 in assets
        ]


def _settle(
    pool: ExifToolPool, root: Path, job: _Job, settings: Settings
) -> tuple[UserFields, int] | SidecarError:
    """Write and/or read one asset's sidecars (worker thread); their merged user fields."""
    tool = pool.get()
    rel = job.ref.library_path
    versions: list[tuple[int, UserFields]] = []
    settled: list[int] = []
    written_names = written_sidecar_paths(rel, settings.sidecars.naming)
    forms = ((sidecar_path(rel), job.canonical_ns), (alternate_sidecar_path(rel), job.alternate_ns))
    try:
        if job.facts is not None and not (root / rel).is_file():
            raise SidecarError(
                path=rel, detail="original is missing; run `picpipe verify`, then import it"
            )
        for name, before_ns in forms:
            if job.facts is not None and name in written_names:
                written = write_sidecar(
                    tool,
                    root,
                    rel,
                    job.facts,
                    job.catalog_user,
                    fsync=settings.imports.fsync,
                    name=name,
                )
                # The user fields are as old as the sidecar was before picpipe rewrote it.
                versions.append((before_ns or 0, written.user))
                settled.append(written.mtime_ns)
            elif before_ns is not None:
                versions.append((before_ns, read_sidecar(tool, root / name).user))
                settled.append(before_ns)
    except SidecarError as exc:
        return exc
    merged = UserFields()
    for _edited, user in sorted(versions, key=lambda v: v[0], reverse=True):
        merged = merged.over(user)
    return merged, max(settled)


def facts_of(asset: Asset, provenance: list[tuple[str, str]]) -> SidecarFacts:
    """picpipe's own sidecar fields of a catalogued asset."""
    return SidecarFacts(
        sha256=asset.sha256,
        original_name=asset.original_name,
        taken_local=asset.taken_local,
        taken_offset_min=asset.taken_offset_min,
        date_source=asset.date_source,
        imported_at=asset.imported_at,
        provenance=tuple(provenance),
        make=asset.make,
        model=asset.model,
        lens=asset.lens,
        gps_lat=asset.gps_lat,
        gps_lon=asset.gps_lon,
        gps_alt=asset.gps_alt,
        width=asset.width,
        height=asset.height,
    )


def vars_of(asset: Asset) -> dict[str, Any]:
    """The user-field columns of an asset, by name."""
    names = ("keywords", "rating", "label", "title", "description", "regions")
    return {name: getattr(asset, name) for name in names}


def _mtime_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _fail(report: SidecarReport, error: SidecarError) -> None:
    report.failed += 1
    report.failures.append({"path": str(error.fields.get("path")), "reason": error.reason})
    log.warning("%s", error.message)
