"""Put damaged originals and lost sidecars right from copies that are known to be good.

`repair_library` finds what `verify_library` finds missing or corrupt (a full re-hash), plus
every sidecar picpipe had settled (``asset.sidecar_mtime_ns`` set) that no longer exists, and
restores each:

- an **original** from the first copy whose bytes match the asset: every verified replica at a
  configured destination, then every folder-source file the catalog recorded with that hash
  (``web/origins.py`` lists and reads them). The bytes are hashed as they are written to a temp
  file beside the original, which is renamed into place only when size and SHA-256 match
  (``library/atomic.py``'s temp name, fsync, rename, fsync of the folder); the file is then
  read back and hashed again. A copy that does not match is discarded and the next one is tried.
- a **sidecar** from a verified replica's ``<key>.xmp`` when one is there and reads as XMP,
  else regenerated from the catalog (``library/repair_sidecars.py``).

Sources and replicas are only read. With ``dry_run`` nothing is written: each copy is still
read and hashed, so the report says what a real run would restore and from where.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from picpipe.catalog.queries import asset_provenance, assets_by_sha, sidecar_refs
from picpipe.errors import PicpipeError
from picpipe.hashing import new_hasher, sha256_file
from picpipe.jobs.report import RunReport
from picpipe.library.atomic import rename_over, temp_path, unlink_quietly
from picpipe.library.layout import run_temp_tag, sidecar_path, written_sidecar_paths
from picpipe.library.repair_sidecars import restore_sidecar, short_reason
from picpipe.library.verify import verify_library
from picpipe.pipeline.sidecar import alternate_sidecar_path
from picpipe.web.origins import Origins

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.pipeline.exiftool import ExifToolPool
    from picpipe.web.origins import Copy

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RepairItem:
    """One thing repair looked at: what was wrong, and what became of it."""

    sha256: str
    what: str  # original | sidecar
    path: str  # relative to the library root
    problem: str  # missing | corrupt: ...
    name: str = ""  # the original file name in its first source
    source_path: str = ""  # "<source>:<path in source>" of its first copy
    outcome: str = "unrestored"  # restored | regenerated | unrestored (+ "would ..." in dry runs)
    origin: str = ""  # where the bytes came from, or why they could not be had

    @property
    def label(self) -> str:
        """The asset as people know it: file name, where it came from, short hash."""
        where = f" from {self.source_path}" if self.source_path else ""
        return f"{self.name or PurePosixPath(self.path).name}{where} [{self.sha256[:12]}]"

    def as_dict(self) -> dict[str, str]:
        return {
            "sha256": self.sha256,
            "what": self.what,
            "path": self.path,
            "name": self.name,
            "source_path": self.source_path,
            "problem": self.problem,
            "outcome": self.outcome,
            "origin": self.origin,
        }


@dataclass(slots=True)
class RepairReport:
    """What one repair found and did; ``picpipe repair --json`` prints this."""

    dry_run: bool = False
    checked: int = 0
    items: list[RepairItem] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    @property
    def unrestored(self) -> list[RepairItem]:
        return [item for item in self.items if item.outcome == "unrestored"]

    def report(self, run_id: int | None) -> RunReport:
        counts = {"checked": self.checked, "problems": len(self.items)}
        for item in self.items:
            key = item.outcome.replace(" ", "_")
            counts[key] = counts.get(key, 0) + 1
        counts["failed"] = len(self.unrestored)
        status = "completed_with_failures" if self.unrestored else "completed"
        return RunReport(
            kind="repair",
            run_id=run_id,
            status=status,
            counts=counts,
            bytes=self.bytes,
            failures=[
                {"path": item.path, "reason": f"{item.label}: {item.problem}; {item.origin}"}
                for item in self.unrestored
            ],
            warnings=[
                {"path": item.path, "problem": item.origin}
                for item in self.items
                if item.outcome.endswith("regenerated")
            ],
            seconds=self.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "items": [item.as_dict() for item in self.items]}


def repair_library(
    settings: Settings,
    catalog: Catalog,
    *,
    tools: ExifToolPool,
    dry_run: bool = False,
    run_id: int = 0,
    stop: Callable[[], bool] = lambda: False,
) -> RepairReport:
    """Find and restore missing or corrupt originals and missing sidecars (see the module doc).

    The caller has checked that the library is there (an unmounted NAS must not be "repaired"
    onto the local disk). Item problems end up in the report; nothing raises for one asset.
    ``stop`` is asked before each item (a run that lost its lease stops; what is left is
    reported unrestored, "stopped").
    """
    started = time.monotonic()
    root = settings.library_root
    report = RepairReport(dry_run=dry_run)
    found = verify_library(catalog, root, workers=settings.workers)
    report.checked = found.checked
    for entry in found.missing:
        report.items.append(RepairItem(entry["sha256"], "original", entry["path"], "missing"))
    for entry in found.corrupt:
        problem = f"corrupt: {entry['problem']}"
        report.items.append(RepairItem(entry["sha256"], "original", entry["path"], problem))
    report.items += _missing_sidecars(catalog, root, settings.sidecars.naming)
    _name_items(catalog, report.items)
    origins = Origins(settings, catalog)
    try:
        # Originals first: a sidecar is only put beside an original that is there.
        for item in sorted(report.items, key=lambda i: i.what != "original"):
            if stop():
                item.origin = "stopped before it was tried (the run lost its lease)"
            elif item.what == "original":
                _restore_original(origins, root, item, settings, dry_run, run_id, report)
            else:
                item.outcome, item.origin = restore_sidecar(
                    origins,
                    root,
                    item.sha256,
                    item.path,
                    tools,
                    settings,
                    dry_run=dry_run,
                    run_id=run_id,
                )
    finally:
        origins.close()
    report.seconds = time.monotonic() - started
    for item in report.unrestored:
        log.warning("not restored: %s %s: %s; %s", item.what, item.label, item.problem, item.origin)
    return report


# -- finding --------------------------------------------------------------------------------


def _missing_sidecars(catalog: Catalog, root: Path, naming: str) -> list[RepairItem]:
    """Sidecars picpipe had written or read (``sidecar_mtime_ns`` set) that are gone now."""
    items: list[RepairItem] = []
    after = ""
    while True:
        with catalog.session() as db:
            refs = sidecar_refs(db, after=after, limit=1000)
        if not refs:
            return items
        after = refs[-1].sha256
        for ref in refs:
            if ref.sidecar_mtime_ns is None:
                continue
            names = {sidecar_path(ref.library_path), alternate_sidecar_path(ref.library_path)}
            if not any(os.path.lexists(root / name) for name in names):
                wanted = written_sidecar_paths(ref.library_path, naming)[0]
                items.append(RepairItem(ref.sha256, "sidecar", wanted, "missing"))


def _name_items(catalog: Catalog, items: list[RepairItem]) -> None:
    shas = sorted({item.sha256 for item in items})
    if not shas:
        return
    with catalog.session() as db:
        names = {sha: asset.original_name for sha, asset in assets_by_sha(db, shas).items()}
        provenance = asset_provenance(db, shas)
    for item in items:
        item.name = names.get(item.sha256, "")
        first = provenance.get(item.sha256)
        if first:
            item.source_path = f"{first[0][0]}:{first[0][1]}"


# -- originals ------------------------------------------------------------------------------


def _restore_original(
    origins: Origins,
    root: Path,
    item: RepairItem,
    settings: Settings,
    dry_run: bool,
    run_id: int,
    report: RepairReport,
) -> None:
    with origins.catalog.session() as db:
        asset = assets_by_sha(db, [item.sha256]).get(item.sha256)
    if asset is None:  # removed from the catalog since verify listed it
        item.origin = "the catalog no longer knows this asset"
        return
    copies = origins.copies(item.sha256)
    if not copies:
        item.origin = "no verified replica at a configured destination and no source copy"
        return
    tried: list[str] = []
    for copy in copies:
        try:
            problem = _copy_into(
                copy,
                root / item.path,
                asset.size,
                item.sha256,
                settings,
                dry_run=dry_run,
                run_id=run_id,
            )
        except (PicpipeError, OSError) as exc:
            problem = f"cannot be read: {short_reason(exc)}"
        if problem is None:
            item.outcome = "would restore" if dry_run else "restored"
            item.origin = copy.label
            report.bytes += asset.size
            return
        tried.append(f"{copy.label}: {problem}")
    item.origin = "no good copy: " + "; ".join(tried)


def _copy_into(
    copy: Copy,
    final: Path,
    size: int,
    sha256: str,
    settings: Settings,
    *,
    dry_run: bool,
    run_id: int,
) -> str | None:
    """Write ``copy`` as ``final`` when its bytes are the asset's; None, or why not."""
    digest = new_hasher()
    seen = 0
    if dry_run:
        for chunk in copy.read():
            seen += len(chunk)
            digest.update(chunk)
        return _mismatch(seen, size, digest.hexdigest(), sha256)
    final.parent.mkdir(parents=True, exist_ok=True)
    fsync = settings.imports.fsync
    # A copy loop of its own (as writer.py's): the bytes are hashed on the way to the temp
    # file, and it is renamed over the original only when they are the asset's.
    temp = temp_path(final, f"{run_temp_tag(run_id)}repair-{secrets.token_hex(6)}")
    problem: str | None = None
    try:
        with open(temp, "wb") as out:
            for chunk in copy.read():
                seen += len(chunk)
                if seen > size:
                    problem = f"larger than the asset's {size} bytes"
                    break
                digest.update(chunk)
                out.write(chunk)
            if fsync and problem is None:
                out.flush()
                os.fsync(out.fileno())
        problem = problem or _mismatch(seen, size, digest.hexdigest(), sha256)
        if problem is not None:
            unlink_quietly(temp)  # the original stays as it was
            return problem
        rename_over(temp, final, fsync=fsync)
    except BaseException:
        unlink_quietly(temp)
        raise
    again, length = sha256_file(final)  # what the disk now gives back
    return _mismatch(length, size, again, sha256, "after writing: ")


def _mismatch(seen: int, size: int, got: str, want: str, prefix: str = "") -> str | None:
    if seen != size:
        return f"{prefix}{seen} bytes, the asset has {size}"
    if got != want:
        return f"{prefix}content does not match the asset's SHA-256"
    return None
