"""Staged copies of index-mode originals: the one read of a source file, kept just long enough.

A source in ``mode: index`` is read once: the hash stage writes the bytes it hashes to a temp
file under ``<home>/staging/index`` and keeps it as ``<sha256>.<ext>`` (`StagedWrite`).
exiftool reads the metadata from it when the source has no local path, and the thumbnail run
decodes it instead of a library original. Once an asset needs it no more (thumbnails made or
failed for good, or the asset is not index-only), `sweep_staged` removes it: the library never
holds such an original, and the staging folder only what is in flight. A staged copy lost
before its thumbnails were made is fetched again from a source (``jobs/workflows.py``
`Restager`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from picpipe.library.atomic import rename_over, temp_path, unlink_quietly
from picpipe.library.layout import TEMP_PREFIX, is_temp_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

# A staged copy of an asset the catalog does not know yet may belong to a run still importing
# it (another process): only this old is it a leftover.
ORPHAN_SECONDS = 3600.0


def staging_root(home: Path) -> Path:
    """Where index-mode originals wait for their metadata and thumbnails."""
    return home / "staging" / "index"


def staged_path(root: Path, sha256: str, name: str) -> Path:
    """The staged copy of ``sha256``; its extension is the source name's (decoders and
    exiftool look at it), ``bin`` when that says nothing."""
    suffix = PurePosixPath(name).suffix.lower().lstrip(".")
    ext = suffix if suffix.isalnum() and len(suffix) <= 10 else "bin"
    return root / f"{sha256}.{ext}"


def find_staged(root: Path, sha256: str) -> Path | None:
    """The staged copy of ``sha256`` whatever its extension, or None."""
    try:
        with os.scandir(root) as found:
            for entry in found:
                if entry.name.startswith(sha256 + ".") and entry.is_file(follow_symlinks=False):
                    return Path(entry.path)
    except OSError:
        return None
    return None


class StagedWrite:
    """The bytes of one read, written to a temp file while they are hashed.

    ``write`` is the hash stage's tee; `keep` renames the temp file to the asset's staged
    name (or drops it when a twin staged the same bytes first); `discard` removes it. Raises
    OSError when the staging folder cannot be written.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.temp = temp_path(root / "x", f"staged-{os.getpid()}-{secrets.token_hex(6)}")
        self._file: BinaryIO | None = open(self.temp, "wb")  # noqa: SIM115 - closed in keep
        self.root = root

    @property
    def handle(self) -> BinaryIO:
        """The open temp file (for writers that take a file, such as a cache sink)."""
        assert self._file is not None
        return self._file

    def write(self, chunk: memoryview) -> None:
        self.handle.write(chunk)

    def keep(self, sha256: str, name: str) -> Path:
        """The staged copy of ``sha256`` (no fsync: it is remade from the source if lost)."""
        self._close()
        final = staged_path(self.root, sha256, name)
        if final.exists():
            unlink_quietly(self.temp)
        else:
            rename_over(self.temp, final, fsync=False)
        return final

    def discard(self) -> None:
        self._close()
        unlink_quietly(self.temp)

    def discard_unkept(self) -> None:
        if self._file is not None or self.temp.exists():
            self.discard()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@contextlib.contextmanager
def staged_write(root: Path) -> Iterator[StagedWrite]:
    """A `StagedWrite` that is discarded unless the block called `StagedWrite.keep`."""
    staged = StagedWrite(root)
    try:
        yield staged
    finally:
        staged.discard_unkept()


def sweep_staged(
    root: Path, needed: Callable[[list[str]], dict[str, bool]], *, now: float | None = None
) -> int:
    """Remove staged copies no asset needs. ``needed(sha256s)`` maps each catalogued one to
    whether it still waits for its thumbnails; copies of assets not catalogued (a failed
    import, or one still running in another process) and temp files go only after
    `ORPHAN_SECONDS`. Returns how many files went."""
    try:
        with os.scandir(root) as found:
            names = [(e.name, e.stat(follow_symlinks=False).st_mtime) for e in found]
    except OSError:
        return 0
    now = time.time() if now is None else now
    staged = {n.partition(".")[0]: (n, m) for n, m in names if not is_temp_name(n)}
    known = needed(sorted(staged))
    removed = 0
    for sha256, (name, mtime) in staged.items():
        still = known.get(sha256)
        if still is False or (still is None and now - mtime > ORPHAN_SECONDS):
            unlink_quietly(root / name)
            removed += 1
    for name, mtime in names:
        if name.startswith(TEMP_PREFIX) and now - mtime > ORPHAN_SECONDS:
            unlink_quietly(root / name)
            removed += 1
    return removed
