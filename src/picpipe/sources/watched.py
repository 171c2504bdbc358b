"""A watched folder (``kind: watched``): a folder source whose files are taken once settled.

Two gates keep half-written files out of the library:
- ``changes`` tracks files named by change events (watchfiles; polling on network mounts,
  with ``poll: poll`` or after inotify ran out of watches) with the `Settler`, and hands out
  a batch once its files stopped moving (a short pairing window lets a HEIC and its MOV, a
  RAW and its JPEG and a sidecar arrive together);
- ``listing`` (every import and reconcile reads it) lists a file whose inode changed less
  than ``settle_seconds`` ago as skipped "still being written": a rename, an ``os.utime``
  and an in-place rewrite all change the ctime, which no tool can set back. The next pass
  imports it; the import re-checks the bytes after hashing (`FolderSource.open`, torn reads).
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from picpipe.config import ScanOptions
from picpipe.sources.base import (
    FolderListing,
    ScanProblem,
    SourceCaps,
    SourceEntry,
    SourceMode,
)
from picpipe.sources.folder import FolderSource
from picpipe.sources.mounts import needs_polling
from picpipe.sources.settle import Settler, signature_of

if TYPE_CHECKING:
    from collections.abc import Iterator

log = logging.getLogger(__name__)
SETTLING = "still being written (not settled yet)"


class WatchedOptions(BaseModel):
    """Options of a ``kind: watched`` (and ``icloudpd``) source entry in the config file."""

    model_config = ConfigDict(extra="forbid")  # a typo in a key must not pass silently

    path: Path
    settle_seconds: float = Field(default=5.0, ge=0)
    poll: Literal["auto", "events", "poll"] = "auto"
    poll_seconds: float = Field(default=2.0, gt=0)  # how often a polled tree is walked
    pair_seconds: float = Field(default=2.0, ge=0)  # companions of a settled file wait this long
    reconcile_seconds: float = Field(default=300.0, gt=0)  # the periodic rescan
    timezone: str | None = None
    # As every kind (`CommonSourceOptions.mode`); ``poll_seconds`` above is this kind's own
    # tree walk, as a watched folder never needs the service's poll.
    mode: SourceMode = "library"


@dataclass(slots=True)
class WatchState:
    """What the watcher does, for `/watcher/status` (written to the catalog by the runner)."""

    mode: str = "starting"  # events | polling
    why: str | None = None  # why polling
    events: int = 0
    pending: int = 0
    batches: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "mode": self.mode,
                "why": self.why,
                "events": self.events,
                "queue": self.pending,
                "batches": self.batches,
                "last_error": self.last_error,
            }


class WatchedSource(FolderSource):
    """A local or mounted folder, watched; refs are POSIX paths relative to the root."""

    kind: ClassVar[str] = "watched"
    caps: ClassVar[SourceCaps] = SourceCaps(can_watch=True, local_paths=True)
    Options = WatchedOptions  # type: ignore[assignment]  # a watched folder has more options

    def __init__(
        self,
        name: str,
        root: Path,
        scan: ScanOptions | None = None,
        options: WatchedOptions | None = None,
    ) -> None:
        super().__init__(name, root, _live_rules(scan))
        self.options = options or WatchedOptions(path=root)
        self.state = WatchState()
        # Files the last listing found still settling: the watcher looks again soon, since
        # a file written before the watch began sends no more events.
        self.settling = 0
        self.stopping = threading.Event()  # the runner's stop: a long reconcile ends early

    # -- the settle gate on every listing ---------------------------------------------------

    def listing(self) -> Iterator[FolderListing | ScanProblem]:
        settle_ns = int(self.options.settle_seconds * 1e9)
        self.settling = 0
        for item in super().listing():
            if self.stopping.is_set():
                # The watch is stopping: the import ends as interrupted, as on Ctrl-C (what
                # is recorded stays, nothing is marked gone); the next pass reads the rest.
                raise WatchStopped
            if isinstance(item, FolderListing) and settle_ns:
                now = time.time_ns()
                rows = item.fingerprint
                # Rows of files to import carry ctime at index 3 (folder.py); the rows are
                # the ones the listing builds its entries from, so replacing one here turns
                # that file into a skipped entry before any entry exists.
                for i, row in enumerate(rows):
                    if len(row) >= 4 and now - row[3] < settle_ns:
                        rows[i] = (row[0], SETTLING)
                        self.settling += 1
            yield item

    # -- watching ---------------------------------------------------------------------------

    def polling_reason(self) -> str | None:
        """Why this folder is polled, or None when change events are trusted."""
        if self.options.poll == "poll":
            return "poll: poll in the config"
        if self.options.poll == "auto":
            return needs_polling(self.root)
        return None

    def changes(self, stop: threading.Event) -> Iterator[list[SourceEntry]]:
        """Settled batches of new or changed files until ``stop``; an empty batch means
        files were deleted (the caller reconciles: they are marked gone)."""
        paths: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        local = threading.Event()  # set when the consumer leaves early: the feeder goes too
        feeder = threading.Thread(
            target=self._feed, args=(paths, stop, local), name=f"watch-{self.name}", daemon=True
        )
        feeder.start()
        settler = Settler(self.options.settle_seconds)
        tracked: dict[str, str] = {}  # ref → path
        ready: dict[str, SourceEntry] = {}
        first_ready = 0.0
        deleted = False
        tick = max(0.05, min(0.5, self.options.settle_seconds / 4))
        try:
            while not stop.wait(tick):
                while True:
                    try:
                        path, removed = paths.get_nowait()
                    except queue.Empty:
                        break
                    if removed and not os.path.lexists(path):
                        deleted = True
                    for ref, full in self._candidates(path):
                        tracked[ref] = full
                for ref, full in list(tracked.items()):
                    sig = signature_of(full)
                    settler.observe(ref, sig)
                    if sig is None:
                        del tracked[ref]
                for ref, sig in settler.settled().items():
                    full = tracked.pop(ref)
                    try:
                        ctime = os.stat(full).st_ctime_ns
                    except OSError:
                        continue
                    name = ref.rpartition("/")[2]
                    ready[ref] = SourceEntry(ref, name, sig[0], sig[1], full, None, None, ctime)
                    first_ready = first_ready or time.monotonic()
                with self.state.lock:
                    self.state.pending = len(tracked) + len(ready)
                waited = time.monotonic() - first_ready
                if ready and (not tracked or waited >= self.options.pair_seconds):
                    batch = list(ready.values())
                    ready.clear()
                    first_ready, deleted = 0.0, False
                    self._count_batch()
                    yield batch
                elif deleted and not tracked:
                    deleted = False
                    self._count_batch()
                    yield []
        finally:
            local.set()
            feeder.join(timeout=5)

    def _count_batch(self) -> None:
        with self.state.lock:
            self.state.batches += 1

    def _candidates(self, path: str) -> Iterator[tuple[str, str]]:
        """Files under ``path`` (a file or a folder moved in) that could be imported."""
        root = str(self.root)
        if os.path.isdir(path):
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not self._ignored_part(d)]
                for name in files:
                    yield from self._candidates(os.path.join(folder, name))
            return
        rel = os.path.relpath(path, root)
        if rel.startswith(".."):
            return
        parts = rel.split(os.sep)
        if any(self._ignored_part(p) for p in parts):
            return  # temp names, hidden files, NAS litter: never ingested, never tracked
        yield "/".join(parts), path

    def _ignored_part(self, name: str) -> bool:
        """The folder source's skip rules by name (temp names, hidden, ignored by rule)."""
        if name in self._ignored_names or (self._ignored and self._ignored.match(name)):
            return True
        return self.scan.skip_hidden and name.startswith(".")

    def _feed(
        self,
        paths: queue.SimpleQueue[tuple[str, bool]],
        stop: threading.Event,
        local: threading.Event,
    ) -> None:
        """Change events (or polls) → paths, until stop; problems are kept in the state and
        the watch is started again (a folder deleted and made again, a mount back)."""
        import watchfiles  # its Rust extension loads only for watching

        forced = self.polling_reason()
        while not stop.is_set() and not local.is_set():
            with self.state.lock:
                self.state.mode = "polling" if forced else "events"
                self.state.why = forced
            try:
                if not self.root.is_dir():
                    raise FileNotFoundError(errno.ENOENT, "watched folder is gone", str(self.root))
                os.listdir(self.root)  # unreadable: PermissionError, reported below
                for changes in watchfiles.watch(
                    self.root,
                    watch_filter=None,
                    debounce=50,
                    step=50,
                    stop_event=_Either(stop, local),
                    rust_timeout=1000,
                    yield_on_timeout=True,
                    force_polling=forced is not None,
                    poll_delay_ms=int(self.options.poll_seconds * 1000),
                    raise_interrupt=False,
                ):
                    with self.state.lock:
                        self.state.events += len(changes)
                        if self.state.last_error and self.root.is_dir():
                            self.state.last_error = None
                    for change, path in changes:
                        paths.put((path, change == watchfiles.Change.deleted))
                    if not self.root.is_dir():
                        raise FileNotFoundError(
                            errno.ENOENT, "watched folder is gone", str(self.root)
                        )
            except OSError as exc:
                if forced is None and is_watch_limit(exc):
                    forced = "out of inotify watches (fs.inotify.max_user_watches)"
                    log.warning("%s: %s; polling instead", self.name, forced)
                    continue
                message = f"{self.root}: {exc.strerror or exc}"
                with self.state.lock:
                    if self.state.last_error != message:
                        log.error("%s: watched folder cannot be read: %s", self.name, message)
                    self.state.last_error = message
                    self.state.mode = "waiting"
                stop.wait(min(5.0, self.options.poll_seconds * 2))


# Names that downloaders and copiers write while a file is incomplete, beyond the folder
# source's rules: a watched folder sees them mid-write, so they are never ingested.
LIVE_TEMP_PATTERNS = ("*.part", "*.tmp", ".*", "~*", "._*")


def _live_rules(scan: ScanOptions | None) -> ScanOptions:
    base = scan or ScanOptions()
    patterns = list(dict.fromkeys([*base.ignored_patterns, *LIVE_TEMP_PATTERNS]))
    return base.model_copy(update={"ignored_patterns": patterns})


class WatchStopped(KeyboardInterrupt):  # ends the import as Ctrl-C does
    """The watch was asked to stop while its source was being listed."""


def is_watch_limit(exc: OSError) -> bool:
    """inotify ran out of watches or instances (ENOSPC / EMFILE from inotify_add_watch)."""
    text = str(exc).lower()
    return exc.errno in (errno.ENOSPC, errno.EMFILE) or "watch limit" in text


class _Either:
    """An event set when either of two is (watchfiles takes one stop event)."""

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self.a, self.b = a, b

    def is_set(self) -> bool:
        return self.a.is_set() or self.b.is_set()
