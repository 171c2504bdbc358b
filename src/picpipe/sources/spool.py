"""Downloads of a remote source, kept in a private temp folder while an import needs them.

The import opens an entry more than once (the hash stage, exiftool on ``local_path``, the
placement's re-read), so a remote original is fetched once and read from disk after that.
Contract:
- `path_for` names the file an entry will have (its ``local_path``) without creating it.
- `fetch` returns that path once the file is complete: one download per ref however many
  threads ask at once; ``download`` writes into an open file named ``<path>.part`` that is
  renamed into place only when it returns, and removed when it raises. A failure is raised
  to every caller and the next `fetch` tries again.
- The newest ``keep`` files stay; older ones are deleted (a later `fetch` downloads again).
- `close` removes the folder and everything in it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from picpipe.library.atomic import rename_over

if TYPE_CHECKING:
    from collections.abc import Callable

KEEP = 16  # more than the import's worker threads, so an entry between stages stays


class DownloadSpool:
    """See the module docstring."""

    def __init__(self, prefix: str, keep: int = KEEP) -> None:
        self._prefix = prefix
        self._keep = keep
        self._lock = threading.Lock()
        self._folder: str | None = None
        self._ready: OrderedDict[str, str] = OrderedDict()  # ref → complete file
        self._gates: dict[str, threading.Lock] = {}

    def path_for(self, ref: str, extension: str = "") -> str:
        return os.path.join(self._root(), f"{ref}{extension}")

    def fetch(self, ref: str, path: str, download: Callable[[BinaryIO], None]) -> str:
        with self._lock:
            ready = self._ready.get(ref)
            if ready is not None and os.path.exists(ready):
                self._ready.move_to_end(ref)
                return ready
            gate = self._gates.setdefault(ref, threading.Lock())
        with gate:
            with self._lock:
                ready = self._ready.get(ref)
            if ready is not None and os.path.exists(ready):
                return ready
            partial = f"{path}.part"
            try:
                with open(partial, "wb") as target:
                    download(target)
                rename_over(Path(partial), Path(path), fsync=False)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(partial)
            with self._lock:
                self._ready[ref] = path
                self._gates.pop(ref, None)
                while len(self._ready) > self._keep:
                    _old, old_path = self._ready.popitem(last=False)
                    with contextlib.suppress(OSError):
                        os.unlink(old_path)
            return path

    def forget(self, ref: str) -> None:
        """Drop the file of ``ref``: the next `fetch` downloads it again."""
        with self._lock:
            path = self._ready.pop(ref, None)
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def close(self) -> None:
        with self._lock:
            folder, self._folder = self._folder, None
            self._ready.clear()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _root(self) -> str:
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix=self._prefix)
            return self._folder
