"""The full-resolution cache's own index: ``index.sqlite3`` beside the cache files.

Not the picpipe catalog: a small SQLite database that ``library/cache.py`` keeps in its cache
folder (``$PICPIPE_HOME/cache/full/index.sqlite3``), with one row per entry (size, last
access, created) and one per space reservation of a fill in progress (bytes, pid, owner,
started). It is here so that all SQL lives under ``catalog/``; what the rows mean, and the
byte-limit contract they keep, is ``library/cache.py``'s.

Concurrency: one connection per `CacheIndex`, shared by the threads of its cache behind one
re-entrant lock; other processes sharing the folder are ordered by SQLite's write lock, which
`CacheIndex.write` takes up front (``BEGIN IMMEDIATE``, 30 s busy timeout). WAL journal with
``synchronous=NORMAL``: a power cut may lose the last accesses, never the database.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

INDEX_NAME = "index.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entry (
    name TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    last_access REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_entry_last_access ON entry (last_access);
CREATE TABLE IF NOT EXISTS reservation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bytes INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    owner TEXT NOT NULL,
    started REAL NOT NULL
);
"""


class IndexWrite:
    """The statements of one write transaction (from `CacheIndex.write`); nothing commits here."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def entry(self, name: str) -> tuple[int, float] | None:
        """(size, last access) of entry ``name``; None when it is not indexed."""
        row = self._db.execute(
            "SELECT size, last_access FROM entry WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else (int(row[0]), float(row[1]))

    def touch(self, name: str, now: float) -> None:
        """Mark entry ``name`` used at ``now``."""
        self._db.execute("UPDATE entry SET last_access = ? WHERE name = ?", (now, name))

    def put_entry(self, name: str, size: int, now: float) -> None:
        """Index entry ``name`` of ``size`` bytes, created and used at ``now`` (replacing any)."""
        self._db.execute(
            "INSERT OR REPLACE INTO entry (name, size, last_access, created) VALUES (?, ?, ?, ?)",
            (name, size, now, now),
        )

    def delete_entry(self, name: str) -> None:
        self._db.execute("DELETE FROM entry WHERE name = ?", (name,))

    def entry_sizes(self) -> dict[str, int]:
        """Size of every indexed entry by name."""
        return {name: size for name, size in self._db.execute("SELECT name, size FROM entry")}

    def idle_before(self, cutoff: float) -> list[str]:
        """Names of the entries last used before ``cutoff``."""
        rows = self._db.execute("SELECT name FROM entry WHERE last_access < ?", (cutoff,))
        return [name for (name,) in rows]

    def least_recent(self) -> Iterator[tuple[str, int]]:
        """(name, size) of the entries, least recently used first (ties by name); lazy."""
        for name, size in self._db.execute(
            "SELECT name, size FROM entry ORDER BY last_access, name"
        ):
            yield str(name), int(size)

    def reserve(self, size: int, *, pid: int, owner: str, now: float) -> int:
        """Record a reservation of ``size`` bytes by (``pid``, ``owner``); returns its id."""
        cursor = self._db.execute(
            "INSERT INTO reservation (bytes, pid, owner, started) VALUES (?, ?, ?, ?)",
            (size, pid, owner, now),
        )
        return int(cursor.lastrowid or 0)

    def release(self, reservation: int) -> None:
        self._db.execute("DELETE FROM reservation WHERE id = ?", (reservation,))

    def reservations(self) -> list[tuple[int, int, str, float]]:
        """(id, pid, owner, started) of every reservation."""
        rows = self._db.execute("SELECT id, pid, owner, started FROM reservation").fetchall()
        return [(int(i), int(p), str(o), float(s)) for i, p, o, s in rows]

    def used(self) -> int:
        """Bytes held: indexed entries plus reservations."""
        entries = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM entry").fetchone()[0]
        reserved = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM reservation").fetchone()[0]
        return int(entries) + int(reserved)


class CacheIndex:
    """The index of one cache folder; safe to share between threads (one connection, a lock).

    Creates ``folder/index.sqlite3`` and its tables when missing. Raises sqlite3 errors as they
    come (a corrupt or unwritable index is the cache's to report).
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / INDEX_NAME
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def write(self) -> Iterator[IndexWrite]:
        """One write transaction under this index's lock; rolled back when the block raises.

        ``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so what the block reads is
        still true when it writes, across processes too.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield IndexWrite(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def totals(self) -> tuple[int, int, int]:
        """(entries, their bytes, reserved bytes)."""
        with self._lock:
            entries, used = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entry"
            ).fetchone()
            reserved = self._db.execute(
                "SELECT COALESCE(SUM(bytes), 0) FROM reservation"
            ).fetchone()[0]
        return int(entries), int(used), int(reserved)

    def entries(self) -> list[tuple[str, int, float]]:
        """(name, size, last access) of every entry, least recently used first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT name, size, last_access FROM entry ORDER BY last_access, name"
            ).fetchall()
        return [(str(n), int(s), float(t)) for n, s, t in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
