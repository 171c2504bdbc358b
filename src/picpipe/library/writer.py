"""Atomic placement of originals: temp name in the target folder, fsync, re-hash, rename.

The copy loop (sendfile, fsync, dropped pages, re-hash) is its own; the temp name, the rename
and the folder fsync are ``library/atomic.py``'s, as for every other atomic write.

A reader never sees a half-written original, and a crash at any point leaves either nothing
or a complete, verified file under its final name (plus, at worst, a temp file that the next
import sweeps away: `sweep_temp_files`).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from picpipe.errors import CopyMismatch, LibraryFull, LibraryUnwritable, PlacementFailed
from picpipe.hashing import sha256_file
from picpipe.library.atomic import fsync_path, rename_over, temp_path, unlink_quietly
from picpipe.library.layout import ORIGINALS, TEMP_PREFIX, is_temp_name, run_temp_tag, temp_run_id

log = logging.getLogger(__name__)

Opener = Callable[[], AbstractContextManager[BinaryIO]]
_COPY_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class Placement:
    """What `place_original` did: wrote a new file, or found the same bytes already there."""

    path: Path
    action: Literal["written", "existing"]


def place_original(
    root: Path,
    rel_path: str,
    open_source: Opener,
    *,
    sha256: str,
    size: int,
    display: str,
    fsync: bool = True,
    run_id: int = 0,
) -> Placement:
    """Put the source's bytes at ``root/rel_path``, verified against ``sha256``.

    An existing file with the right size and hash is kept (an earlier run placed it). Raises
    LibraryFull, CopyMismatch (the source changed while copying) or PlacementFailed for this
    item, LibraryUnwritable when the library refuses writes altogether. Never leaves a temp file
    (a killed process leaves one named for ``run_id``, which recovery of that run removes).
    """
    final = root / rel_path
    if final.exists():
        if final.stat().st_size == size and sha256_file(final)[0] == sha256:
            return Placement(final, "existing")
        log.warning("replacing damaged original %s", rel_path)
    folder = final.parent
    try:
        _make_dirs(folder, stop=root, fsync=fsync)
    except OSError as exc:
        raise _map_os_error(exc, display, root) from exc
    temp = temp_path(final, f"{run_temp_tag(run_id)}{sha256[:16]}-{secrets.token_hex(4)}")
    try:
        _copy(open_source, temp, fsync=fsync)
        copied, copied_size = sha256_file(temp)
        if copied != sha256 or copied_size != size:
            raise CopyMismatch(path=display)
        rename_over(temp, final, fsync=fsync)
    except OSError as exc:
        unlink_quietly(temp)
        raise _map_os_error(exc, display, root) from exc
    except BaseException:
        unlink_quietly(temp)
        raise
    return Placement(final, "written")


def check_writable(root: Path) -> None:
    """Create ``root/originals`` and prove a file can be written there (LibraryUnwritable).

    Probes left by a process killed mid-check are removed first (they only ever sit directly
    in ``originals/``, so this costs one listing).
    """
    originals = root / ORIGINALS
    probe = originals / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
    try:
        originals.mkdir(parents=True, exist_ok=True)
        for stale in originals.glob(f"{TEMP_PREFIX}probe-*"):
            unlink_quietly(stale)
        with open(probe, "wb") as handle:
            handle.write(b"picpipe")
        probe.unlink(missing_ok=True)
    except OSError as exc:
        raise LibraryUnwritable(root=str(root), detail=exc.strerror or str(exc)) from exc


def sweep_temp_files(root: Path, *, run_ids: Sequence[int] | None = None) -> list[Path]:
    """Delete unfinished temp files under ``root/originals``; returns what was removed.

    With ``run_ids``, only the temp files of those (stale) runs and temp files that carry no
    run id (left by versions before runs were leased); without, every one.
    """
    owned = None if run_ids is None else set(run_ids)
    removed: list[Path] = []
    for path in find_temp_files(root):
        if owned is not None:
            run_id = temp_run_id(path.name)
            if run_id is not None and run_id not in owned:
                continue
        unlink_quietly(path)
        removed.append(path)
    if removed:
        log.info("removed %d unfinished temp file(s) from an interrupted run", len(removed))
    return removed


def find_temp_files(root: Path) -> list[Path]:
    found: list[Path] = []
    stack = [root / ORIGINALS]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif is_temp_name(entry.name):
                        found.append(Path(entry.path))
        except FileNotFoundError:
            continue
    return found


def _copy(open_source: Opener, temp: Path, *, fsync: bool) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with open_source() as source:
            in_fd = _fileno(source)
            if in_fd is not None:
                offset = 0
                while sent := os.sendfile(fd, in_fd, offset, _COPY_CHUNK):
                    offset += sent
            else:
                while data := source.read(_COPY_CHUNK):
                    os.write(fd, data)
        if fsync:
            os.fsync(fd)
            # Drop the cached pages so the re-hash that follows reads what the disk holds,
            # not what we just handed the kernel.
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _fileno(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _make_dirs(folder: Path, *, stop: Path, fsync: bool) -> None:
    if folder.is_dir():
        return
    missing: list[Path] = []
    probe = folder
    while not probe.is_dir() and probe != stop and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        if fsync:
            fsync_path(path.parent)


def _map_os_error(exc: OSError, display: str, root: Path) -> Exception:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LibraryFull(path=display, detail=exc.strerror)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LibraryUnwritable(root=str(root), detail=exc.strerror or str(exc))
    return PlacementFailed(path=display, detail=exc.strerror or str(exc))
