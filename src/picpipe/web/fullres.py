"""Full resolution: the library original when reachable, else the cache; JPEG when asked.

Order of places for an original: the library (opened, and its size and, once per file
identity (``web/verified.py``), its SHA-256 checked against the catalog before any header is
sent), then the full-resolution cache, which fetches a missing or corrupt original from a
verified replica or a source and keeps it (``library/cache.py``, ``web/origins.py``).
With ``as_jpeg`` an original that is not a JPEG (HEIC, RAW, TIFF, PNG, a video's still) is
converted upright once (``web/convert.py``) and the JPEG kept in the same cache as
``<sha256>-upright.jpg``, under the same limits.

Concurrent requests for one missing entry share one fetch or conversion: the first starts a
task, the others wait for it, and each gets its own duplicate of the resulting descriptor (the
entry may be evicted a moment later and is still sent whole). Blocking work runs in worker
threads under a limiter of its own, so a burst of full-size requests never starves the
thumbnail reads of threads.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.responses import Response

from picpipe.errors import OriginalUnreachable
from picpipe.library.cache import CachedFile, CacheSink, FullCache
from picpipe.web.convert import Converter
from picpipe.web.origins import (
    AssetFacts,
    Origins,
    asset_facts,
    open_library_file,
)
from picpipe.web.ranged import FdResponse
from picpipe.web.thumbmemo import cache_control, not_modified
from picpipe.web.verified import VerifiedOriginals

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

GB = 1_000_000_000
DAY = 86_400
FULL_THREADS = 8
FACTS_SECONDS = 60.0
FACTS_KEPT = 4096
# Formats every current browser shows as they are; anything else is converted for ``as_jpeg``.
BROWSER_TYPES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "video/mp4", "video/webm"}
    | {"video/quicktime", "video/x-m4v"}
)
_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "heic": "image/heic",
    "heif": "image/heif",
    "hif": "image/heif",
    "avif": "image/avif",
    "mov": "video/quicktime",
    "m4v": "video/x-m4v",
    "mp4": "video/mp4",
    "webm": "video/webm",
}


def media_type_of(facts: AssetFacts) -> str:
    """The original's content type: the catalog's, else one guessed from its extension."""
    if facts.mime_type:
        return facts.mime_type
    return (
        _TYPES.get(facts.ext)
        or mimetypes.guess_type(f"x.{facts.ext}")[0]
        or ("application/octet-stream")
    )


@dataclass(slots=True)
class _Opened:
    """An open original or cache entry; ``accel`` is its path under the nginx prefix."""

    fd: int
    size: int
    accel: str | None


class _Flight:
    """One shared fetch or conversion and how many requests are waiting for it."""

    def __init__(self, task: asyncio.Future[CachedFile]) -> None:
        self.task = task
        self.users = 0
        self.closed = False


class FullResolution:
    """Full-size bytes for one application: library, cache, replicas and sources, conversion."""

    def __init__(self, settings: Settings, catalog: Catalog, *, private: bool) -> None:
        self.settings = settings
        self.catalog = catalog
        self.cache_control = cache_control(private=private)
        self.cache: FullCache | None = None
        try:
            self.cache = FullCache(
                settings.home_root / "cache" / "full",
                max_bytes=round(settings.cache.max_size_gb * GB),
                ttl_seconds=settings.cache.ttl_days * DAY,
            )
        except OSError as exc:  # a read-only home: the library still serves
            log.warning("the full-resolution cache cannot be used: %s", exc.strerror or exc)
        self.origins = Origins(settings, catalog)
        self.verified = VerifiedOriginals()
        self.converter = Converter(max_pixels=settings.thumbs.max_pixels)
        self.limiter = anyio.CapacityLimiter(FULL_THREADS)
        self._flights: dict[str, _Flight] = {}
        self._known: dict[str, tuple[float, AssetFacts]] = {}

    async def respond(
        self, request: Request, sha256: str, *, as_jpeg: bool, accel: str | None = None
    ) -> Response:
        """The original (or its upright JPEG) of ``sha256``; see ``MediaServer.respond``.

        ``accel`` is a trusted nginx prefix: the answer is then an empty 200 carrying
        ``X-Accel-Redirect`` to the file, which nginx sends itself.
        """
        facts = await self._facts(sha256)
        if facts is None:
            raise HTTPException(404, "no such asset")
        media_type = media_type_of(facts)
        convert = as_jpeg and media_type != "image/jpeg"
        etag = f'"{sha256}-full-jpeg"' if convert else f'"{sha256}-full"'
        headers = {"etag": etag, "cache-control": self.cache_control}
        if not_modified(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        if convert:
            opened, media_type = await self._converted(facts), "image/jpeg"
        else:
            opened = await self._original(facts)
        if accel is not None and opened.accel is not None:
            os.close(opened.fd)
            headers["x-accel-redirect"] = accel + opened.accel
            return Response(status_code=200, headers=headers, media_type=media_type)
        return FdResponse(opened.fd, opened.size, headers=headers, media_type=media_type)

    async def _facts(self, sha256: str) -> AssetFacts | None:
        """The asset's row, remembered for `FACTS_SECONDS` (one catalog query per full-size
        request costs more than sending a photo; an asset's path and size never change)."""
        now = time.monotonic()
        known = self._known.get(sha256)
        if known is not None and now - known[0] < FACTS_SECONDS:
            return known[1]
        facts = await self._run(asset_facts, self.catalog, sha256)
        if facts is not None:
            if len(self._known) >= FACTS_KEPT:
                self._known.pop(next(iter(self._known)))
            self._known[sha256] = (now, facts)
        return facts

    def cache_stats(self) -> dict[str, Any]:
        if self.cache is not None:
            stats = self.cache.stats() | {"available": True}
        else:  # the folder could not be opened: same shape, nothing in it
            stats = {key: 0 for key in ("entries", "bytes", "reserved_bytes", "hits")}
            stats |= {key: 0 for key in ("misses", "fetches", "evictions", "expirations")}
            stats |= {
                "available": False,
                "uncached": 0,
                "max_bytes": round(self.settings.cache.max_size_gb * GB),
                "utilisation": 0.0,
                "ttl_seconds": self.settings.cache.ttl_days * DAY,
            }
        stats["path"] = "cache/full"  # relative to the home: no absolute paths over HTTP
        stats["conversions"] = self.converter.conversions
        return stats

    def close(self) -> None:
        self.converter.close()
        self.origins.close()
        if self.cache is not None:
            self.cache.close()

    # -- originals and conversions ------------------------------------------------------

    async def _original(self, facts: AssetFacts) -> _Opened:
        root = self.settings.library_root
        fd = await self._run(open_library_file, root, facts)
        # Hashed once per file identity before its first answer (web/verified.py): a corrupt
        # original is never sent; the cache, a replica or a source gives the bytes, or 503.
        if fd is not None and not await self._run(self._intact, fd, facts):
            os.close(fd)
            fd = None
        if fd is not None:
            return _Opened(fd, facts.size, f"library/{facts.library_path}")
        cache = self._require_cache(facts)
        name = f"{facts.sha256}.{facts.ext}"
        produce = self.origins.producer(facts)
        found = await self._shared(
            name, partial(self._run, cache.get_or_fill, name, facts.size, produce)
        )
        return _cached(found)

    async def _converted(self, facts: AssetFacts) -> _Opened:
        cache = self._require_cache(facts)
        name = f"{facts.sha256}-upright.jpg"
        found = await self._shared(name, partial(self._convert, cache, facts, name))
        return _cached(found)

    async def _convert(self, cache: FullCache, facts: AssetFacts, name: str) -> CachedFile:
        found = await self._run(cache.lookup, name)
        if found is not None:
            return found
        original = await self._original(facts)
        try:
            data = await self.converter.to_jpeg(original.fd, facts.kind)
        finally:
            os.close(original.fd)

        def write(sink: CacheSink) -> None:
            sink.write(data)

        return await self._run(cache.get_or_fill, name, len(data), write)

    def _intact(self, fd: int, facts: AssetFacts) -> bool:
        try:
            return self.verified.matches(fd, facts)
        except OSError as exc:  # a read error on the NAS: as good as missing
            log.warning("library original of %s unreadable: %s", facts.sha256[:12], exc)
            return False

    def _require_cache(self, facts: AssetFacts) -> FullCache:
        if self.cache is None:
            raise OriginalUnreachable(
                short=facts.sha256[:12], tried="the full-resolution cache cannot be used"
            )
        return self.cache

    # -- one task per missing entry -----------------------------------------------------

    async def _shared(self, name: str, start: Callable[[], Awaitable[CachedFile]]) -> CachedFile:
        """``start()``'s entry, run once for all concurrent callers; each gets its own fd."""
        flight = self._flights.get(name)
        if flight is None:
            flight = _Flight(asyncio.ensure_future(start()))
            self._flights[name] = flight
            flight.task.add_done_callback(partial(self._landed, name, flight))
        flight.users += 1
        try:
            result = await asyncio.shield(flight.task)
            return CachedFile(result.name, os.dup(result.fd), result.size, result.cached)
        finally:
            flight.users -= 1
            _release(flight)

    def _landed(self, name: str, flight: _Flight, _task: object) -> None:
        if self._flights.get(name) is flight:
            del self._flights[name]
        _release(flight)

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(func, *args, limiter=self.limiter)


def _release(flight: _Flight) -> None:
    """Close the shared descriptor once the task is done and nobody waits for it any more."""
    if flight.closed or flight.users or not flight.task.done():
        return
    flight.closed = True
    if not flight.task.cancelled() and flight.task.exception() is None:
        flight.task.result().close()


def _cached(found: CachedFile) -> _Opened:
    accel = f"cache/{found.name[:2]}/{found.name}" if found.cached else None
    return _Opened(found.fd, found.size, accel)
