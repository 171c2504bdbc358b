"""A local folder (or a mounted share) as a source: the first and simplest kind.

The listing uses ``os.scandir`` and stats each media file once (size, mtime_ns), so a rescan
decides "unchanged" without reading content. Every file is listed: hidden folders, NAS litter
(``@eaDir``, ``#recycle``), sidecars and the temp names of downloaders and copiers as skipped
entries with their reason (by name, without a stat); a file whose extension says nothing is
stat'ed and marked for sniffing (its first bytes are read by the import, not here).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat as stat_module
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from pydantic import ConfigDict

from picpipe.config import ScanOptions
from picpipe.errors import SymlinkLoop, TornRead, UnreadableFile, VanishedFile
from picpipe.sources.base import (
    CommonSourceOptions,
    FolderListing,
    ScanProblem,
    SourceCaps,
    SourceEntry,
    iter_entries,
)

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterator
from functools import partial


class FolderOptions(CommonSourceOptions):
    """Options of a ``kind: folder`` source entry in the config file (``mode`` and
    ``poll_seconds`` from `CommonSourceOptions`)."""

    model_config = ConfigDict(extra="forbid")  # `mvoe: true` must not pass silently

    path: Path
    move: bool = False  # delete each source file once its library copy is verified (inboxes)
    timezone: str | None = None  # IANA zone for dates without offset or GPS (pipeline/zones.py)


class FolderSource:
    """Files under a local directory tree; refs are POSIX paths relative to the root."""

    kind: ClassVar[str] = "folder"
    caps: ClassVar[SourceCaps] = SourceCaps(
        can_watch=True, stable_ids=False, can_remove=True, local_paths=True
    )
    Options = FolderOptions

    def __init__(self, name: str, root: Path, scan: ScanOptions | None = None) -> None:
        self.name = name
        self.root = Path(os.path.abspath(root))
        self.scan = scan or ScanOptions()
        self._extensions = self.scan.media_extensions()
        # ".jpg" and ".JPG" are found without lower-casing; other spellings fall back to it.
        self._suffixes = frozenset(f".{ext}" for e in self._extensions for ext in (e, e.upper()))
        self._ignored_names = frozenset(self.scan.ignored_names)
        patterns = "|".join(fnmatch.translate(p) for p in self.scan.ignored_patterns)
        self._ignored = re.compile(patterns) if patterns else None
        self._ignored_file = _file_filter(self.scan.ignored_patterns, self._extensions)
        self._sidecars = frozenset(self.scan.sidecar_extensions)

    @property
    def location(self) -> str:
        return str(self.root)

    # -- protocol ------------------------------------------------------------------------

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        """Walk the tree depth-first, one folder's files together; never raises for one item.

        The hot path of every rescan: per file one ``stat``, a few string checks and one
        small tuple. `SourceEntry` objects are made only for folders that changed.
        """
        try:
            root_stat = os.stat(self.root)
        except OSError as exc:
            yield ScanProblem(".", f"source folder cannot be read: {exc.strerror}")
            return
        visited = {(root_stat.st_dev, root_stat.st_ino)}
        stack: list[tuple[str, str]] = [(str(self.root), "")]
        follow = self.scan.follow_symlinks
        skip_hidden = self.scan.skip_hidden
        suffixes = self._suffixes
        extensions = self._extensions
        ignored_names = self._ignored_names
        ignored_starts, ignored_match = self._ignored_file
        ignored = self._ignored
        is_regular = stat_module.S_ISREG
        is_directory = stat_module.S_ISDIR
        while stack:
            path, prefix = stack.pop()
            try:
                with os.scandir(path) as listing:
                    children = list(listing)
            except OSError as exc:
                yield ScanProblem(prefix.rstrip("/") or ".", _folder_reason(exc))
                continue
            subfolders: list[tuple[str, str]] = []
            # Media rows are (name, size, mtime_ns, ctime_ns); files to sniff add a fifth
            # element ""; files skipped by name are (name, reason), with no stat at all.
            rows: list[tuple[Any, ...]] = []
            for child in children:
                name = child.name
                dot = name.rfind(".")
                # Media files first: most entries are, and they need no is_dir call.
                if dot > 0 and (name[dot:] in suffixes or name[dot + 1 :].lower() in extensions):
                    if (
                        name in ignored_names
                        or name.startswith(ignored_starts)
                        or (ignored_match is not None and ignored_match(name))
                    ):
                        rows.append((name, self._rule_reason(name)))
                        continue
                    if not follow and child.is_symlink():
                        rows.append((name, _SYMLINK))
                        continue
                    try:
                        st = child.stat()
                    except OSError as exc:
                        if exc.errno == errno.ELOOP:
                            rows.append((name, _LOOP))
                            continue
                        ref = prefix + _display(name)
                        broken = exc.errno == errno.ENOENT and child.is_symlink()
                        reason = "broken symbolic link" if broken else _file_reason(exc, ref)
                        yield ScanProblem(ref, reason)
                        continue
                    if is_regular(st.st_mode):
                        rows.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
                        continue
                    if not is_directory(st.st_mode):
                        rows.append((name, _NOT_REGULAR))
                        continue
                    # a folder named like a photo: walk it like any other folder
                elif name in ignored_names:
                    rows.append((name, self._rule_reason(name)))
                    continue
                try:
                    is_dir = child.is_dir(follow_symlinks=follow)
                except OSError as exc:
                    yield ScanProblem(prefix + _display(name), _folder_reason(exc))
                    continue
                if not is_dir:
                    problem = self._other_file(child, rows)
                    if problem is not None:
                        yield ScanProblem(prefix + _display(name), problem)
                    continue
                if skip_hidden and name[0] == ".":
                    rows.append((name, "hidden folder (not scanned)"))
                    continue
                if ignored and ignored.match(name):
                    rows.append((name, f"{self._rule_reason(name)}; folder not scanned"))
                    continue
                ref = prefix + _display(name)
                try:
                    st = child.stat(follow_symlinks=True)
                except OSError as exc:
                    if exc.errno == errno.ELOOP:
                        rows.append((name, _LOOP))
                    else:
                        yield ScanProblem(ref, _folder_reason(exc))
                    continue
                if (st.st_dev, st.st_ino) in visited:
                    # A loop (or a second path to a folder walked already) is a skip with its
                    # reason, not a failure that marks every later run "with failures".
                    rows.append((name, _LOOP))
                    continue
                visited.add((st.st_dev, st.st_ino))
                subfolders.append((child.path, ref + "/"))
            if rows:
                yield FolderListing(
                    prefix[:-1], fingerprint=rows, build=partial(_entries, path, prefix, rows)
                )
            # Reversed so that the walk visits sub-folders in listing order.
            stack.extend(reversed(subfolders))

    @contextmanager
    def open(self, entry: SourceEntry) -> Iterator[BinaryIO]:
        """Open for reading; on exit re-stat to catch a file that changed while being read."""
        path = self._path(entry)
        try:
            stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise VanishedFile(path=entry.ref) from exc
        except OSError as exc:
            raise UnreadableFile(path=entry.ref, detail=exc.strerror or str(exc)) from exc
        try:
            before = os.fstat(stream.fileno())
            if (before.st_size, before.st_mtime_ns) != (entry.size, entry.mtime_ns):
                raise TornRead(path=entry.ref)
            yield stream
            try:
                after = os.stat(path)
            except FileNotFoundError as exc:
                raise VanishedFile(path=entry.ref) from exc
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or (
                after.st_ino != before.st_ino
            ):
                raise TornRead(path=entry.ref)
        finally:
            stream.close()

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]:
        """Poll the tree; yields the entries that appeared or changed since the last look."""
        known = {
            e.ref: (e.size, e.mtime_ns)
            for e in iter_entries(self)
            if isinstance(e, SourceEntry) and e.skipped is None
        }
        while not stop.wait(2.0):
            changed: list[SourceEntry] = []
            for item in iter_entries(self):
                if (
                    isinstance(item, SourceEntry)
                    and item.skipped is None
                    and known.get(item.ref)
                    != (
                        item.size,
                        item.mtime_ns,
                    )
                ):
                    known[item.ref] = (item.size, item.mtime_ns)
                    changed.append(item)
            if changed:
                yield changed

    def remove(self, entry: SourceEntry) -> None:
        """Delete a source file (``--move`` only, after its copy is verified and recorded)."""
        os.unlink(self._path(entry))

    def close(self) -> None:
        return None

    # -- helpers -------------------------------------------------------------------------

    def _other_file(self, child: os.DirEntry[str], rows: list[tuple[Any, ...]]) -> str | None:
        """Account for a file without a media extension: skipped by name (sidecar, temp
        name, hidden, rule) with no stat, else stat'ed and marked for sniffing. Returns a
        problem when it cannot be stat'ed."""
        name = child.name
        dot = name.rfind(".")
        if dot > 0 and name[dot + 1 :].lower() in self._sidecars:
            rows.append((name, f"sidecar or proxy file (.{name[dot + 1 :].lower()})"))
            return None
        if name in self._ignored_names or (self._ignored and self._ignored.match(name)):
            rows.append((name, self._rule_reason(name)))
            return None
        if self.scan.skip_hidden and name[0] == ".":
            rows.append((name, "hidden file"))
            return None
        if not self.scan.follow_symlinks and child.is_symlink():
            rows.append((name, _SYMLINK))
            return None
        try:
            st = child.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                rows.append((name, _LOOP))
                return None
            if exc.errno == errno.ENOENT and child.is_symlink():
                return "broken symbolic link"
            return _file_reason(exc, name)
        if not stat_module.S_ISREG(st.st_mode):
            rows.append((name, _NOT_REGULAR))
            return None
        rows.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, ""))
        return None

    def _rule_reason(self, name: str) -> str:
        """Why a name is skipped by the scan rules (only called for skipped names)."""
        if name in self._ignored_names:
            return f"ignored by rule ({name})"
        for pattern in self.scan.ignored_patterns:
            if fnmatch.fnmatchcase(name, pattern):
                kind = "temporary name" if pattern in TEMP_PATTERNS else "ignored by rule"
                return f"{kind} ({pattern})"
        return "ignored by rule"

    def _path(self, entry: SourceEntry) -> str | bytes:
        if entry.local_path is not None:
            return entry.local_path
        return os.path.join(self.root, entry.ref)


def _entries(path: str, prefix: str, rows: list[tuple[Any, ...]]) -> list[SourceEntry]:
    """Turn one folder's fingerprint rows into entries (only for folders that changed)."""
    out: list[SourceEntry] = []
    for row in rows:
        name = row[0]
        shown = _display(name)
        extras = None if shown == name else {"problem": _NOT_UTF8}
        full = os.path.join(path, name)
        if len(row) == 2:  # skipped by name: stat'ed only now, for the catalog row
            try:
                st = os.lstat(full)
                size, mtime_ns, ctime_ns = st.st_size, st.st_mtime_ns, st.st_ctime_ns
            except OSError:
                size, mtime_ns, ctime_ns = 0, 0, None
            out.append(
                SourceEntry(
                    prefix + shown, shown, size, mtime_ns, full, None, extras, ctime_ns, row[1]
                )
            )
            continue
        size, mtime_ns, ctime_ns = row[1], row[2], row[3]
        sniff = len(row) == 5
        out.append(
            SourceEntry(
                prefix + shown, shown, size, mtime_ns, full, None, extras, ctime_ns, None, sniff
            )
        )
    return out


def _file_filter(
    patterns: list[str], extensions: frozenset[str]
) -> tuple[tuple[str, ...], Callable[[str], re.Match[str] | None] | None]:
    """Cheap tests for ignored names that already have a media extension.

    ``name*`` patterns become a ``startswith`` tuple; ``*.ext`` patterns matter only when
    ``ext`` is a media extension; anything else goes through one compiled regex.
    """
    prefixes: list[str] = []
    complex_patterns: list[str] = []
    for pattern in patterns:
        head, star, tail = pattern.partition("*")
        if star and not tail and not any(c in head for c in "?[*"):
            prefixes.append(head)
        elif star and not head and not any(c in tail for c in "?[*"):
            if tail.rpartition(".")[2].lower() in extensions:
                complex_patterns.append(pattern)
        else:
            complex_patterns.append(pattern)
    if not complex_patterns:
        return tuple(prefixes), None
    regex = re.compile("|".join(fnmatch.translate(p) for p in complex_patterns))
    return tuple(prefixes), regex.match


# The default patterns that name downloaders' and copiers' files still being written.
TEMP_PATTERNS = frozenset({"*.part", "*.tmp", "*.crdownload", ".~*", "~$*", ".picpipe-tmp-*"})
_SYMLINK = "symbolic link (scan.follow_symlinks is off)"
_NOT_REGULAR = "not a regular file (device, pipe or socket)"
_LOOP = "symbolic link loop (leads to a folder already scanned); not followed"

_NOT_UTF8 = "file name is not valid UTF-8; catalogued with \\xNN escapes"


def _display(name: str) -> str:
    """A file name as text; bytes that are not UTF-8 become ``\\xNN`` (deterministic)."""
    if name.isascii():
        return name
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _folder_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "folder disappeared during the scan"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop; skipped"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"folder cannot be read ({exc.strerror}); check its permissions"
    return f"folder cannot be read ({exc.strerror})"


def _file_reason(exc: OSError, ref: str) -> str:
    if exc.errno == errno.ELOOP:
        return SymlinkLoop(path=ref).message
    if exc.errno == errno.ENOENT:
        return VanishedFile(path=ref).message
    return UnreadableFile(path=ref, detail=exc.strerror or str(exc)).message


# For sources that list one folder's files themselves (`sources/single_file.py`).
folder_entries = _entries
