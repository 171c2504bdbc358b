"""Re-hash originals against the catalog: what is missing, corrupt, untracked or unfinished."""

from __future__ import annotations

import contextlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picpipe.catalog.models import Asset
from picpipe.catalog.queries import iter_assets
from picpipe.hashing import sha256_file
from picpipe.library.layout import ORIGINALS, is_temp_name

# What other tools keep inside a library they read: never originals, never imported, not a
# problem; verify names them in its notes.
CONSUMER_FOLDERS = {
    "@eaDir": "Synology's thumbnails and index data",
    ".thumbnails": "a thumbnail cache (file managers, digiKam)",
    "#recycle": "a NAS recycle bin",
    "#snapshot": "NAS snapshots",
}
CONSUMER_FILES = {
    "digikam4.db": "digiKam's database",
    "thumbnails-digikam.db": "digiKam's thumbnail database",
    "recognition.db": "digiKam's face database",
    "similarity.db": "digiKam's similarity database",
    ".DS_Store": "macOS folder settings",
    "Thumbs.db": "Windows thumbnails",
    "desktop.ini": "Windows folder settings",
}

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from picpipe.catalog.db import Catalog


@dataclass(slots=True)
class VerifyReport:
    """The outcome of `verify_library`; ``clean`` when nothing needs attention."""

    checked: int = 0
    ok: int = 0
    bytes: int = 0
    sampled_percent: float = 100.0
    missing: list[dict[str, str]] = field(default_factory=list)
    corrupt: list[dict[str, str]] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)  # other tools' files, ignored
    # Index-only assets (`mode: index`): no original in the library, nothing to check here.
    index_only: int = 0

    @property
    def problems(self) -> int:
        return len(self.missing) + len(self.corrupt) + len(self.untracked) + len(self.temp_files)

    @property
    def clean(self) -> bool:
        return self.problems == 0

    def next_steps(self) -> list[str]:
        """The commands that put right what was found, for people and for ``--json``."""
        steps: list[str] = []
        if self.missing or self.corrupt:
            steps.append(
                "picpipe repair: restores missing and corrupt originals from a verified replica "
                "or a source copy whose hash matches (--dry-run shows what it would do)"
            )
        if self.temp_files:
            steps.append(
                "picpipe import: an interrupted run left unfinished files; the next run "
                "removes them and copies what was not finished"
            )
        if self.untracked:
            steps.append(
                "picpipe import PATH: files under originals/ that the catalog does not know "
                "are never served or replicated; import them from where they came from"
            )
        return steps

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "ok": self.ok,
            "bytes": self.bytes,
            "sampled_percent": self.sampled_percent,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "untracked": self.untracked,
            "temp_files": self.temp_files,
            "notes": self.notes,
            "index_only": self.index_only,
            "clean": self.clean,
            "next": self.next_steps(),
        }


def verify_library(
    catalog: Catalog,
    root: Path,
    *,
    sample_percent: float | None = None,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every (or a random ``sample_percent`` of) catalogued original on disk.

    A full check also lists files under ``originals/`` that the catalog does not know
    (untracked) and temp files left by an interrupted write. Reads only; changes nothing.
    """
    percent = 100.0 if sample_percent is None else max(0.0, min(100.0, sample_percent))
    report = VerifyReport(sampled_percent=percent)
    columns = (Asset.sha256, Asset.size, Asset.library_path, Asset.index_only)
    with catalog.session() as db:
        every = [(r[0], int(r[1]), r[2], bool(r[3])) for r in iter_assets(db, columns=columns)]
    rows = [(sha, size, rel) for sha, size, rel, index_only in every if not index_only]
    report.index_only = len(every) - len(rows)
    known_paths = {path for _sha, _size, path in rows}
    if percent < 100.0:
        rows = [r for r in rows if random.random() * 100.0 < percent]

    def check(row: tuple[str, int, str]) -> tuple[str, str, int, str | None]:
        sha, size, rel = row
        path = root / rel
        try:
            digest, actual = sha256_file(path)
        except FileNotFoundError:
            return sha, rel, size, "missing"
        except OSError as exc:
            return sha, rel, size, f"unreadable: {exc.strerror}"
        if actual != size:
            return sha, rel, size, f"size {actual} bytes, catalog says {size}"
        if digest != sha:
            return sha, rel, size, "content does not match its sha256"
        return sha, rel, size, None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for sha, rel, size, problem in pool.map(check, rows):
            report.checked += 1
            if progress is not None:
                progress(report.checked)
            if problem is None:
                report.ok += 1
                report.bytes += size
            elif problem == "missing":
                report.missing.append({"sha256": sha, "path": rel})
            else:
                report.corrupt.append({"sha256": sha, "path": rel, "problem": problem})
    if percent >= 100.0:
        _scan_for_strays(root, known_paths, report)
    return report


def _scan_for_strays(root: Path, known: set[str], report: VerifyReport) -> None:
    base = root / ORIGINALS
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(root)):
            if name in CONSUMER_FILES or name in CONSUMER_FOLDERS:
                _note(report, name, name)
    for folder, dirs, files in os.walk(base):
        rel_folder = os.path.relpath(folder, root).replace(os.sep, "/")
        for name in sorted(d for d in dirs if d in CONSUMER_FOLDERS):
            _note(report, f"{rel_folder}/{name}", name)
        dirs[:] = sorted(d for d in dirs if d not in CONSUMER_FOLDERS)
        for name in sorted(files):
            rel = f"{rel_folder}/{name}"
            if name in CONSUMER_FILES:
                _note(report, rel, name)
            elif is_temp_name(name):
                report.temp_files.append(rel)
            elif rel not in known and not name.endswith(".xmp"):
                report.untracked.append(rel)


def _note(report: VerifyReport, rel: str, name: str) -> None:
    what = CONSUMER_FILES.get(name) or CONSUMER_FOLDERS[name]
    report.notes.append({"path": rel, "note": f"{what}: ignored, never imported"})
