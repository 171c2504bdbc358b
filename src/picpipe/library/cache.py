"""The full-resolution cache: ``$PICPIPE_HOME/cache/full/{sha[:2]}/{name}``, byte and age limits.

Entries are whole files named by content (``<sha256>.<ext>`` for an original,
``<sha256>-upright.jpg`` for a JPEG made from a format browsers cannot show). A small SQLite
index beside them (``index.sqlite3``, whose SQL is in ``catalog/cache_index.py``) holds each
entry's size and last access, so the least recently used order and the age limit survive
restarts; it is the only record of what the cache holds, and files it does not list are
removed when the cache opens.

Contract:
- **Never over the byte limit.** Space is reserved in the index (a ``reservation`` row, in the
  same write transaction that evicts the least recently used entries to make room) before a
  byte is written, and a fill may not write more than it reserved. At every moment the files
  under the cache folder, finished or being written, add up to no more than the entries plus
  the reservations, which never exceed ``max_bytes``. This holds across threads and across
  processes sharing the folder (SQLite's write lock orders them).
- **An entry larger than the whole limit** (or one that cannot get room because other fills
  hold it) is still produced, into an anonymous temp file that is never visible in the folder
  and disappears when its reader closes it: it is served without being cached.
- **Age limit.** An entry not read for ``ttl_seconds`` is removed (when next asked for, and in
  every fill and at open).
- **Verified before visible.** The producer writes to a temp name and raises when the bytes are
  wrong (the caller hashes them); only then is the file renamed into place and indexed.
- **One fill per name.** Concurrent `get_or_fill` calls for one name in this process run the
  producer once; the others wait and then read the entry.
- A reader gets an open file descriptor, so an entry evicted while it is being sent is still
  sent whole (the kernel keeps the unlinked file until the descriptor is closed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

from picpipe.catalog.cache_index import CacheIndex
from picpipe.errors import EntryTooLarge
from picpipe.library.atomic import rename_over, temp_path
from picpipe.library.layout import TEMP_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from picpipe.catalog.cache_index import IndexWrite

    # Writes an entry's bytes into the sink; raises when they are wrong (nothing is kept).
    Producer: TypeAlias = Callable[["CacheSink"], None]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[0-9a-f]{64}(-upright)?\.[a-z0-9]{1,10}$")
_STALE_RESERVATION_SECONDS = 24 * 3600  # a fill never takes this long; its owner is gone

_LIVE_OWNERS: set[str] = set()  # ids of the caches open in this process


@dataclass(slots=True)
class CachedFile:
    """An open cache entry (or an uncached spool): read it with ``os.pread(fd, …)``, then close.

    ``cached`` is False for an entry served without being kept (larger than the cache).
    """

    name: str
    fd: int
    size: int
    cached: bool = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class FullCache:
    """The cache folder and its index; safe to use from many threads (and processes) at once.

    ``clock`` is wall time (it is persisted); tests pass their own.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        fsync: bool = True,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self.fsync = fsync
        self.hits = 0
        self.misses = 0
        self.fetches = 0
        self.evictions = 0
        self.expirations = 0
        self.uncached = 0
        self._flights: dict[str, tuple[threading.Lock, int]] = {}
        # Reservations and temp files carry the pid and this instance's id, so a restarted
        # server that got the same pid (pid 1 in a container) still recognises the old ones.
        self.owner = secrets.token_hex(6)
        _LIVE_OWNERS.add(self.owner)
        self._flights_lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        # One connection behind one lock (the index's): it also guards the counters above.
        self._index = CacheIndex(root)
        self._recover()

    # -- reading -------------------------------------------------------------------------

    def path_of(self, name: str) -> Path:
        """Where entry ``name`` lives (``{sha[:2]}/{name}`` under the root); checks the name."""
        if not _NAME.match(name):
            raise ValueError(f"not a cache entry name: {name!r}")
        return self.root / name[:2] / name

    def lookup(self, name: str) -> CachedFile | None:
        """Open entry ``name`` and mark it used now; None when it is absent or expired."""
        path = self.path_of(name)
        now = self.clock()
        with self._index.write() as db:
            row = db.entry(name)
            if row is None:
                self.misses += 1
                return None
            size, last_access = row
            if now - last_access > self.ttl_seconds:
                self._remove(db, [name])
                self.expirations += 1
                self.misses += 1
                return None
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError as exc:  # gone, or something else in its place (a link)
                log.warning("cache entry %s cannot be read (%s); dropped", name, exc.strerror)
                self._remove(db, [name])
                self.misses += 1
                return None
            if os.fstat(fd).st_size != size:
                os.close(fd)
                self._remove(db, [name])
                self.misses += 1
                return None
            db.touch(name, now)
            self.hits += 1
            return CachedFile(name, fd, size)

    # -- filling -------------------------------------------------------------------------

    def get_or_fill(self, name: str, size: int, produce: Producer) -> CachedFile:
        """Entry ``name``, produced by ``produce(handle)`` (exactly ``size`` bytes) if absent.

        ``produce`` writes the bytes and raises when they are not right (wrong hash, an
        unreachable origin); nothing is kept then and its exception propagates. Concurrent
        calls for one name in this process produce once. The result is always open: a cached
        entry, or an uncached spool when the entry cannot be kept (see the module docstring).
        """
        path = self.path_of(name)
        with self._flight(name):
            found = self.lookup(name)
            if found is not None:
                return found
            self.fetches += 1
            reservation = self._reserve(size)
            if reservation is None:
                return self._spool(name, size, produce)
            temp = temp_path(path, f"{os.getpid()}-{self.owner}-{secrets.token_hex(4)}-{name}")
            try:
                path.parent.mkdir(exist_ok=True)
                fd = self._produce_into(temp, size, produce)
                try:
                    # The file was fsynced (with ``fsync``); the folder is not: an entry
                    # lost to a power cut is dropped by `_recover` and fetched again.
                    rename_over(temp, path, fsync=False)
                    self._commit(reservation, name, size)
                except BaseException:
                    os.close(fd)
                    raise
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                self._release(reservation)
                raise
            return CachedFile(name, fd, size)

    def _produce_into(self, temp: Path, size: int, produce: Producer) -> int:
        """Write ``temp`` via ``produce`` (at most ``size`` bytes); an fd open for reading."""
        with open(temp, "xb") as handle:
            _produce_exactly(handle, size, produce)
            if self.fsync:
                os.fsync(handle.fileno())
        return os.open(temp, os.O_RDONLY | os.O_CLOEXEC)

    def _spool(self, name: str, size: int, produce: Producer) -> CachedFile:
        self.uncached += 1
        with tempfile.TemporaryFile(dir=self.root) as handle:  # O_TMPFILE: never has a name
            _produce_exactly(handle, size, produce)
            fd = os.dup(handle.fileno())
        return CachedFile(name, fd, size, cached=False)

    @contextlib.contextmanager
    def _flight(self, name: str) -> Iterator[None]:
        """Hold ``name``'s fill lock; the lock is forgotten when its last user leaves."""
        with self._flights_lock:
            lock, users = self._flights.get(name, (threading.Lock(), 0))
            self._flights[name] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._flights_lock:
                lock, users = self._flights[name]
                if users == 1:
                    del self._flights[name]
                else:
                    self._flights[name] = (lock, users - 1)

    def _reserve(self, size: int) -> int | None:
        """Make room for ``size`` bytes and hold it; None when that is impossible now."""
        if size > self.max_bytes:
            return None
        now = self.clock()
        with self._index.write() as db:
            self._expire(db, now)
            used = db.used()
            if not self._evict(db, used + size - self.max_bytes):
                return None  # the rest is reserved by fills in progress
            return db.reserve(size, pid=os.getpid(), owner=self.owner, now=now)

    def _commit(self, reservation: int, name: str, size: int) -> None:
        now = self.clock()
        with self._index.write() as db:
            db.release(reservation)
            db.put_entry(name, size, now)

    def _release(self, reservation: int) -> None:
        with self._index.write() as db:
            db.release(reservation)

    # -- upkeep --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Entries, bytes, limits, utilisation and this process's counters."""
        entries, used, reserved = self._index.totals()
        return {
            "entries": entries,
            "bytes": used,
            "reserved_bytes": reserved,
            "max_bytes": self.max_bytes,
            "utilisation": round(used / self.max_bytes, 4) if self.max_bytes else 0.0,
            "ttl_seconds": self.ttl_seconds,
            "hits": self.hits,
            "misses": self.misses,
            "fetches": self.fetches,
            "evictions": self.evictions,
            "expirations": self.expirations,
            "uncached": self.uncached,
        }

    def entries(self) -> list[tuple[str, int, float]]:
        """(name, size, last access) of every entry, least recently used first."""
        return self._index.entries()

    def close(self) -> None:
        self._index.close()
        _LIVE_OWNERS.discard(self.owner)

    def _recover(self) -> None:
        """At open: drop dead fills, orphan files, rows without files, expired and excess rows."""
        now = self.clock()
        with self._index.write() as db:
            for rid, pid, owner, started in db.reservations():
                if not _alive(pid, owner) or now - started > _STALE_RESERVATION_SECONDS:
                    db.release(rid)
            indexed = db.entry_sizes()
            on_disk = self._scan(now)
            for name, size in indexed.items():
                if on_disk.get(name) != size:
                    self._remove(db, [name])
            for name in on_disk.keys() - indexed.keys():
                with contextlib.suppress(OSError):
                    self.path_of(name).unlink()
            self._expire(db, now)
            self._evict(db, db.used() - self.max_bytes)  # a lowered limit

    def _scan(self, now: float) -> dict[str, int]:
        """Finished files on disk by name; temp files of dead or long-gone fills are removed."""
        found: dict[str, int] = {}
        for shard in _listdir(self.root):
            folder = self.root / shard
            if len(shard) != 2 or not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if entry.name.startswith(TEMP_PREFIX):
                    pid, _, rest = entry.name[len(TEMP_PREFIX) :].partition("-")
                    owner = rest.partition("-")[0]
                    stale = now - entry.stat().st_mtime > _STALE_RESERVATION_SECONDS
                    if not pid.isdigit() or not _alive(int(pid), owner) or stale:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                elif _NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                    found[entry.name] = entry.stat().st_size
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)  # nothing else belongs here
        return found

    def _expire(self, db: IndexWrite, now: float) -> None:
        old = db.idle_before(now - self.ttl_seconds)
        if old:
            self._remove(db, old)
            self.expirations += len(old)

    def _evict(self, db: IndexWrite, need: int) -> bool:
        """Remove least recently used entries until ``need`` bytes are free; False (and
        nothing removed) when the entries cannot free that much."""
        if need <= 0:
            return True
        victims, freed = [], 0
        for name, size in db.least_recent():
            if freed >= need:
                break
            victims.append(name)
            freed += size
        if freed < need:
            return False
        self._remove(db, victims)
        self.evictions += len(victims)
        return True

    def _remove(self, db: IndexWrite, names: list[str]) -> None:
        """Delete rows and files inside the caller's write transaction (so no fill of the
        same name can slip its fresh file in between and lose it)."""
        for name in names:
            db.delete_entry(name)
            with contextlib.suppress(FileNotFoundError):
                self.path_of(name).unlink()


class CacheSink:
    """What a producer writes to: refuses to write past ``limit`` bytes (EntryTooLarge)."""

    def __init__(self, handle: BinaryIO, limit: int) -> None:
        self.handle = handle
        self.limit = limit
        self.written = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.written + len(data) > self.limit:
            raise EntryTooLarge(detail=f"more than the expected {self.limit} bytes")
        self.written += len(data)
        return self.handle.write(data)

    def reset(self) -> None:
        """Start again (a producer moving on to its next origin)."""
        self.handle.seek(0)
        self.handle.truncate()
        self.written = 0


def _produce_exactly(handle: BinaryIO, size: int, produce: Producer) -> None:
    sink = CacheSink(handle, size)
    produce(sink)
    if sink.written != size:
        raise EntryTooLarge(detail=f"produced {sink.written} bytes, expected {size}")
    handle.flush()


def _alive(pid: int, owner: str) -> bool:
    """Whether the fill of ``owner`` in process ``pid`` may still be running."""
    if pid == os.getpid():
        return owner in _LIVE_OWNERS
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
