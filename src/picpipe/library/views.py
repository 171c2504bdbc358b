"""Link views: browsable folders of symlinks (or hardlinks) to the originals.

``picpipe views`` and every import rebuild the layouts ``views.layouts`` asks for under
``views.path`` (default ``<library>/views``): ``by-date/2023/04/05/IMG_1234.JPG`` and so on
(`library/view_plan.py` names them). Contract:

- Originals are never written, moved or deleted: a view holds only links. Symlinks are
  relative, so the view survives the library being mounted elsewhere; hardlinks need the
  view on the library's file system (LibraryError otherwise).
- Incremental: the digest of every folder's planned links is kept in
  ``<views>/.picpipe-views.json``; a rebuild rewrites only folders whose digest changed or
  that are gone, and removes folders no asset, album member or source file needs any more.
- Atomic per folder: a folder is built complete in ``<views>/.picpipe-staging/`` and then
  exchanged with the old one in one ``renameat2(RENAME_EXCHANGE)``, or renamed into place when
  it is new (its highest missing parent moves in as a whole). A reader walking a layout sees
  each folder either as it was or as it is now; a replaced folder stays in the staging area
  until the next build, so a listing that began just before the exchange ends whole. File
  systems without the exchange (NFS, SMB) get two renames: the folder is absent for that
  moment, never half-full.
- Files a tool put into a view folder (a regular file that is not a hardlink of ours, a
  subfolder) are carried into the rebuilt folder, never deleted.
- Each link carries the asset's sidecar beside it as ``<link name>.xmp`` when there is one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picpipe.catalog.views import (
    album_members,
    assets_in_folders,
    catalog_signature,
    source_paths,
    view_assets,
)
from picpipe.config import VIEW_LAYOUTS
from picpipe.errors import ConfigError, LibraryError
from picpipe.library.layout import ORIGINALS, sidecar_ext_path, sidecar_path
from picpipe.library.view_plan import plan_layout, template_for
from picpipe.library.view_state import (
    BuildKey,
    Folders,
    changed_day_folders,
    discover,
    folder_digest,
    load_state,
    save_state,
)

if TYPE_CHECKING:
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.catalog.views import ViewAsset
    from picpipe.config import Settings
    from picpipe.library.view_plan import ViewLink

log = logging.getLogger(__name__)

STAGING = ".picpipe-staging"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@dataclass(slots=True)
class LayoutReport:
    folders: int = 0
    links: int = 0
    rebuilt: int = 0
    removed: int = 0
    skipped: list[str] = field(default_factory=list)  # originals that are not there


@dataclass(slots=True)
class ViewsReport:
    """What one build did; ``picpipe views --json`` prints this."""

    root: str
    link: str
    layouts: dict[str, LayoutReport] = field(default_factory=dict)
    full: bool = True  # False: only the day folders of new assets were read and planned
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "link": self.link,
            "layouts": {
                name: {
                    "folders": r.folders,
                    "links": r.links,
                    "rebuilt": r.rebuilt,
                    "removed": r.removed,
                    "skipped": r.skipped[:100],
                }
                for name, r in self.layouts.items()
            },
            "full": self.full,
            "seconds": round(self.seconds, 3),
        }


def build_views(settings: Settings, catalog: Catalog, *, rewrite: bool = False) -> ViewsReport:
    """Bring every configured view up to date with the catalog (see the module docstring);
    ``rewrite`` rebuilds every folder (after links were changed by hand).

    Raises ConfigError for a view path inside ``originals/`` or a bad template, LibraryError
    when the view cannot be written (hardlinks across file systems included).
    """
    started = time.monotonic()
    options = settings.views
    library = settings.library_root.resolve()
    root = check_views_root(library, settings.views_root)
    templates = {layout: template_for(layout, options.templates) for layout in options.layouts}
    report = ViewsReport(str(root), options.link)
    naming = settings.sidecars.naming
    key = BuildKey(options.link, naming, {str(k): v for k, v in templates.items()})
    state = load_state(root)
    with catalog.session() as db:
        signature = catalog_signature(db)
        changed = None if rewrite else changed_day_folders(db, state, key, signature)
        if changed is None:
            assets = view_assets(db)
            albums = album_members(db) if "by-album" in templates else []
            sources = source_paths(db) if "by-source" in templates else []
        else:  # only new assets, in by-date style folders: read just those days
            assets, albums, sources = assets_in_folders(db, changed), [], []
            report.full = False

    def sidecar_of(asset: ViewAsset) -> str:
        if naming == "sha":
            return sidecar_path(asset.library_path)
        return sidecar_ext_path(asset.library_path)

    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = root / STAGING
        # Folders the last build replaced, kept until now so that a reader that opened one
        # just before the exchange could still list it whole; and what a crash left.
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        layouts: dict[str, Folders] = dict(state.get("layouts", {}))
        for layout in VIEW_LAYOUTS:
            base = root / layout
            if layout not in templates and layout not in layouts and not base.is_dir():
                continue
            old = layouts.get(layout)
            if old is None or rewrite:
                old = discover(base) | ({k: ["", 0] for k in old} if old else {})
            plan: dict[str, list[ViewLink]] = {}  # a layout no longer configured: all goes
            if layout in templates:
                plan = plan_layout(
                    layout,
                    templates[layout],
                    assets,
                    albums=albums,
                    sources=sources,
                    sidecar_of=sidecar_of,
                )
            layouts[layout] = _apply(
                library,
                base,
                staging,
                plan,
                old,
                report,
                mode=options.link,
                partial=changed is not None,
            )
            if layout not in templates:
                del layouts[layout]
                with contextlib.suppress(OSError):
                    base.rmdir()
                report.layouts.pop(layout, None)
            save_state(root, key, None, layouts)
        save_state(root, key, signature, layouts)
    except OSError as exc:
        raise LibraryError(detail=f"views under {root}: {exc}") from exc
    report.seconds = time.monotonic() - started
    log.info(
        "views: %s",
        ", ".join(
            f"{k} {v.links} links, {v.rebuilt} folders rebuilt" for k, v in report.layouts.items()
        ),
    )
    return report


def check_views_root(library: Path, views_root: Path) -> Path:
    """The views folder, resolved; raises ConfigError when it would mix with the originals."""
    root = views_root.expanduser().resolve()
    originals = library / ORIGINALS
    if root == library or root.is_relative_to(originals) or originals.is_relative_to(root):
        raise ConfigError(
            detail=f"views.path {root} must be a folder of its own, outside {originals}"
        )
    return root


def _apply(
    library: Path,
    base: Path,
    staging: Path,
    plan: dict[str, list[ViewLink]],
    old: Folders,
    report: ViewsReport,
    *,
    mode: str,
    partial: bool,
) -> Folders:
    """Rebuild changed folders of one layout and remove unneeded ones (unless ``partial``:
    the plan holds only some folders); the layout's new folder records."""
    layout = report.layouts.setdefault(base.name, LayoutReport())
    records: Folders = dict(old) if partial else {}
    if plan:
        base.mkdir(exist_ok=True)
    for folder, links in plan.items():
        digest = folder_digest(mode, links)
        records[folder] = [digest, len(links)]
        final = base / folder if folder else base
        if old.get(folder, ["", 0])[0] == digest and final.is_dir():
            continue
        _write_folder(library, base, final, staging, links, mode, layout)
        layout.rebuilt += 1
    for folder in sorted(set(old) - set(records), key=lambda f: -f.count("/")):
        _remove_folder(base, base / folder if folder else base, staging)
        layout.removed += 1
    layout.folders = len(records)
    layout.links = sum(int(count) for _digest, count in records.values())
    return records


def _write_folder(
    library: Path,
    base: Path,
    final: Path,
    staging: Path,
    links: list[ViewLink],
    mode: str,
    report: LayoutReport,
) -> None:
    work = staging / secrets.token_hex(8)
    work.mkdir()
    done = False
    try:
        exists = final.is_dir()
        top = final
        if exists:
            staged = work / final.name
        else:  # build the highest missing folder whole, so it appears complete
            while not top.parent.exists():
                top = top.parent
            staged = work / top.name / final.relative_to(top)
        staged.mkdir(parents=True)
        up = os.path.relpath(library, final)
        for link in links:
            _link(library, up, link.target, staged / link.name, mode, report)
            if link.sidecar is not None:
                _link(library, up, link.sidecar, staged / f"{link.name}.xmp", mode, None)
        if not exists:
            os.rename(work / top.name, top)
            work.rmdir()
            done = True
            return
        subfolders = _carry_foreign(final, staged)
        if not _exchange(staged, final):
            os.rename(final, work / "old")
            os.rename(staged, final)
            staged = work / "old"
        for name in subfolders:  # nested folders (by-source) and a tool's own folders
            with contextlib.suppress(OSError):
                os.rename(staged / name, final / name)
        done = True  # the old folder stays in staging until the next build
    finally:
        if not done:
            shutil.rmtree(work, ignore_errors=True)


def _link(
    library: Path, up: str, target: str, dest: Path, mode: str, report: LayoutReport | None
) -> None:
    source = library / target
    if mode == "hardlink":
        try:
            os.link(source, dest)
        except FileNotFoundError:
            if report is not None:
                report.skipped.append(target)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise ConfigError(
                    detail="views.link hardlink needs views.path on the library's file system"
                ) from exc
            raise
        return
    if not source.exists():
        if report is not None:
            report.skipped.append(target)
        return
    os.symlink(f"{up}/{target}", dest)


def _carry_foreign(old: Path, new: Path) -> list[str]:
    """Hardlink files that are not ours from ``old`` into ``new``; the subfolder names."""
    folders: list[str] = []
    with os.scandir(old) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            elif not _is_ours(entry) and not (new / entry.name).exists():
                os.link(entry.path, new / entry.name, follow_symlinks=False)
                log.info("views: kept %s, which another tool put there", entry.path)
    return folders


def _is_ours(entry: os.DirEntry[str]) -> bool:
    # picpipe puts only symlinks and hardlinks of library files into views.
    return entry.is_symlink() or (
        entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_nlink > 1
    )


def _remove_folder(base: Path, final: Path, staging: Path) -> None:
    try:
        with os.scandir(final) as it:
            entries = list(it)
    except FileNotFoundError:
        return
    if final != base and entries and all(_is_ours(e) for e in entries):
        os.rename(final, staging / secrets.token_hex(8))  # disappears at once
    else:
        for entry in entries:
            if _is_ours(entry):
                os.unlink(entry.path)
    folder = final
    while folder != base and folder.is_relative_to(base):
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass  # renamed away above
        except OSError:
            break  # not empty: other folders or a tool's files live here
        folder = folder.parent


@functools.cache
def _renameat2() -> Any:
    """glibc's renameat2 (2.28+), or None (musl, macOS): then folders are swapped by renames."""
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one step; False where the system or file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}:
        return False
    raise OSError(code, os.strerror(code), str(b))
