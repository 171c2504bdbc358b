"""A hot in-memory LRU of thumbnail bytes with their response headers precomputed.

A gallery asks for hundreds of small files per screen; reading each from disk and building its
headers per request costs more than the rest of the request. `ThumbMemo` keeps the bytes of
recently served thumbnails (bounded in bytes, 64 MB by default; files over 1 MB are read every
time) keyed by (sha256, size), with the raw ASGI header lists of the 200 and 304 answers ready.

Thumbnails are content-addressed: the file of one (sha256, size) changes only when it is
remade (``picpipe thumbs --all``, a format change). An entry is therefore trusted for
`REVALIDATE_SECONDS` after it was read or last checked, then re-checked with one ``stat``
(mtime and size) the next time it is asked for; a remade or deleted thumbnail is noticed within
that window. The ETag stays ``"<sha256>-<size>"`` across remakes, since the picture is the same.

Lookups and inserts happen on the event loop thread only; file reads run in a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.exceptions import HTTPException

from picpipe.library.layout import thumb_path

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from picpipe.pipeline.thumbs import ThumbFormat

log = logging.getLogger(__name__)

REVALIDATE_SECONDS = 30.0
DEFAULT_MAX_BYTES = 64 << 20
MAX_ENTRY_BYTES = 1 << 20
_ENTRY_OVERHEAD = 512  # headers, key and object bookkeeping, roughly
_TYPES = {"jpg": "image/jpeg", "webp": "image/webp"}
YEAR = 31_536_000

RawHeaders = list[tuple[bytes, bytes]]


def cache_control(*, private: bool) -> str:
    """Cache-Control of content-addressed bytes: a year, immutable.

    ``private`` when a token guards the server, so a shared proxy never hands a guarded
    picture to someone without the token.
    """
    return f"{'private' if private else 'public'}, max-age={YEAR}, immutable"


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """True when an ``If-None-Match`` header matches ``etag`` (weak comparison, RFC 9110)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False


@dataclass(slots=True)
class ThumbEntry:
    """One thumbnail's bytes and the raw headers of its 200 and 304 answers."""

    body: bytes
    etag: str
    ext: str  # jpg | webp: the file's extension under thumbs/
    headers_200: RawHeaders
    headers_304: RawHeaders
    mtime_ns: int
    checked: float  # time.monotonic() of the last read or stat

    @property
    def media_type(self) -> str:
        return _TYPES[self.ext]

    def header_map(self, *, body: bool) -> dict[str, str]:
        raw = self.headers_200 if body else self.headers_304
        return {k.decode(): v.decode() for k, v in raw}

    def accel_path(self, sha256: str, size: str) -> str:
        """The file's path under the nginx prefix (``thumbs/{size}/{sha[:2]}/{sha}.{ext}``)."""
        return thumb_path(sha256, size, self.ext)  # type: ignore[arg-type]


class ThumbMemo:
    """Thumbnail bytes under ``home/thumbs`` with an LRU memory of the recent ones."""

    def __init__(
        self,
        home: Path,
        fmt: ThumbFormat,
        *,
        private: bool,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home = home
        # The configured format first; the other one still serves thumbnails made before a
        # format change until `thumbs --all` remakes them.
        self.extensions = ("webp", "jpg") if fmt == "webp" else ("jpg", "webp")
        self.cache_control = cache_control(private=private).encode()
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], ThumbEntry] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def lookup(self, sha256: str, size: str) -> ThumbEntry | None:
        """The remembered entry when it is fresh (no I/O); None means call `get`."""
        entry = self._entries.get((sha256, size))
        if entry is None or self.clock() - entry.checked > REVALIDATE_SECONDS:
            return None
        self._entries.move_to_end((sha256, size))
        self.hits += 1
        return entry

    async def get(self, sha256: str, size: str) -> ThumbEntry | None:
        """The thumbnail, from memory or disk; None when no such thumbnail file exists.

        Raises HTTPException 503 when the thumbnail file exists but cannot be read (I/O
        error, permissions).
        """
        if (entry := self.lookup(sha256, size)) is not None:
            return entry
        key = (sha256, size)
        known = self._entries.get(key)
        self.misses += 1
        try:
            fresh = await anyio.to_thread.run_sync(self._read, sha256, size, known)
        except OSError as exc:  # the thumbnail folder itself is unreadable (not one file missing)
            log.warning("thumbnail %s/%s cannot be read: %s", sha256[:12], size, exc.strerror)
            raise HTTPException(503, "thumbnail storage cannot be read") from exc
        if fresh is None:
            self._drop(key)
            return None
        if fresh is not known:
            self._drop(key)
            if len(fresh.body) <= MAX_ENTRY_BYTES:
                self._store(key, fresh)
            return fresh
        fresh.checked = self.clock()
        if key in self._entries:  # still remembered (another request may have evicted it)
            self._entries.move_to_end(key)
        return fresh

    def stats(self) -> dict[str, Any]:
        return {
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
        }

    # -- internals ---------------------------------------------------------------------

    def _read(self, sha256: str, size: str, known: ThumbEntry | None) -> ThumbEntry | None:
        """Runs in a worker thread: stat (and read when changed) the thumbnail file."""
        for ext in self.extensions:
            path = self.home / thumb_path(sha256, size, ext)  # type: ignore[arg-type]
            try:
                # O_NOFOLLOW: thumbnails are plain files picpipe wrote; a symbolic link put in
                # their place must not lead anywhere else.
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                with open(fd, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    if (
                        known is not None
                        and known.mtime_ns == stat.st_mtime_ns
                        and len(known.body) == stat.st_size
                    ):
                        return known
                    body = handle.read()
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                log.warning("thumbnail %s is a symbolic link; not served", path.name)
                continue
            return self._entry(sha256, size, ext, body, stat.st_mtime_ns)
        return None

    def _entry(self, sha256: str, size: str, ext: str, body: bytes, mtime_ns: int) -> ThumbEntry:
        etag = f'"{sha256}-{size}"'
        common: RawHeaders = [(b"etag", etag.encode()), (b"cache-control", self.cache_control)]
        headers_200: RawHeaders = [
            (b"content-type", _TYPES[ext].encode()),
            (b"content-length", str(len(body)).encode()),
            *common,
        ]
        return ThumbEntry(body, etag, ext, headers_200, common, mtime_ns, self.clock())

    def _store(self, key: tuple[str, str], entry: ThumbEntry) -> None:
        cost = len(entry.body) + _ENTRY_OVERHEAD
        while self._entries and self._bytes + cost > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= len(old.body) + _ENTRY_OVERHEAD
        if cost <= self.max_bytes:
            self._entries[key] = entry
            self._bytes += cost

    def _drop(self, key: tuple[str, str]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body) + _ENTRY_OVERHEAD
