"""One file given to ``picpipe import`` by path: its folder, listed as that file alone.

The source is named by the file's own path, not its folder's: a listing of one file must never
mark the folder's other files as gone for a source that imports the whole folder. Scan rules
(hidden, ignored names) do not apply: the user named this file.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING

from picpipe.sources.base import FolderListing, ScanProblem
from picpipe.sources.folder import FolderSource, folder_entries

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator
    from pathlib import Path

    from picpipe.config import ScanOptions
    from picpipe.sources.base import SourceEntry


class SingleFileSource(FolderSource):
    """``file`` alone, read like any file of a folder source (opened, hashed, never changed)."""

    def __init__(self, file: Path, scan: ScanOptions | None = None) -> None:
        super().__init__(str(file), file.parent, scan)
        self.file_name = file.name

    @property
    def location(self) -> str:
        return str(self.root)

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        path = os.path.join(self.root, self.file_name)
        try:
            st = os.stat(path)
        except OSError as exc:
            yield ScanProblem(self.file_name, f"cannot be read ({exc.strerror})")
            return
        ext = self.file_name.rpartition(".")[2].lower() if "." in self.file_name else ""
        row: tuple[object, ...] = (self.file_name, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if ext not in self._extensions:
            row = (*row, "")  # no media extension: recognised by its first bytes
        rows = [row]
        yield FolderListing(
            "", fingerprint=rows, build=partial(folder_entries, str(self.root), "", rows)
        )

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]:
        return iter(())  # a single file is imported once, not watched


__all__ = ["SingleFileSource"]
