"""Image and video bytes over HTTP: thumbnails from memory or disk, full resolution via the cache.

`MediaServer.respond` is the one place that turns (sha256, size) into a response. Thumbnails
(``tiny|small|medium``) come from ``$PICPIPE_HOME/thumbs`` through a hot in-memory LRU
(`ThumbMemo`) with precomputed headers; ``full`` comes from the library original when it is
reachable, else from the full-resolution cache (``library/cache.py``) which fetches it from a
verified replica or a source and keeps it under its byte and age limits.

Every response is content-addressed: a strong ETag ``"<sha256>-<size>"`` (``-full-jpeg`` for a
converted full-size JPEG) and a year-long immutable ``Cache-Control``; ``If-None-Match`` answers
304. Errors are raised as ``HTTPException`` (404, 503) with messages that name no file system
path, so the application's handlers render them like every other error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from starlette.exceptions import HTTPException
from starlette.responses import Response

from picpipe.hashing import is_sha256
from picpipe.web.fastpath import accel_prefix
from picpipe.web.thumbmemo import ThumbMemo, not_modified

if TYPE_CHECKING:
    from starlette.requests import Request

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings

log = logging.getLogger(__name__)

Size = Literal["tiny", "small", "medium", "full"]
SIZES: frozenset[str] = frozenset(("tiny", "small", "medium", "full"))


class MediaServer:
    """Answers asset bytes for one application (thumbnails and full resolution).

    Thread-safe for its callers on one event loop; blocking file I/O runs in worker threads.
    ``close`` releases the cache index and the conversion worker.
    """

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        from picpipe.web.fullres import FullResolution

        self.settings = settings
        self.catalog = catalog
        self.private = settings.serve.token is not None or settings.serve.read_token is not None
        self.thumbs = ThumbMemo(settings.home_root, settings.thumbs.format, private=self.private)
        self.full = FullResolution(settings, catalog, private=self.private)

    async def respond(
        self, request: Request, sha256: str, size: str, *, as_jpeg: bool = False
    ) -> Response:
        """The asset ``sha256`` at ``size`` (tiny|small|medium|full) as a response.

        Thumbnails are served in the format they were made in (``thumbs.format``). ``full`` is
        the original's bytes as they are (videos with Range support); ``as_jpeg`` asks for a
        JPEG whatever the original's format (HEIC, RAW, TIFF, PNG… are converted upright and
        the JPEG kept in the cache; a video gives a still). Raises HTTPException 404 for a bad
        key, an unknown asset or a missing thumbnail; ``OriginalUnreachable`` (a LibraryError:
        503) when ``full`` cannot be read anywhere (library down, no replica or source copy);
        ``ConversionFailed`` (an ItemError: 422) when no JPEG can be made.
        """
        if not is_sha256(sha256) or size not in SIZES:
            raise HTTPException(404, "no such asset or size")
        accel = accel_prefix(request.scope)
        if size == "full":
            return await self.full.respond(request, sha256, as_jpeg=as_jpeg, accel=accel)
        entry = await self.thumbs.get(sha256, size)
        if entry is None:
            raise HTTPException(404, f"no {size} thumbnail of {sha256[:12]} (not made yet?)")
        if not_modified(request.headers.get("if-none-match"), entry.etag):
            return Response(status_code=304, headers=entry.header_map(body=False))
        if accel is not None:
            headers = entry.header_map(body=False)
            headers["x-accel-redirect"] = accel + entry.accel_path(sha256, size)
            return Response(status_code=200, headers=headers, media_type=entry.media_type)
        return Response(entry.body, headers=entry.header_map(body=True))

    def cache_stats(self) -> dict[str, Any]:
        """Full-resolution cache and thumbnail memory figures for ``GET /cache/stats``."""
        stats = self.full.cache_stats()
        stats["thumbnail_memory"] = self.thumbs.stats()
        return stats

    def close(self) -> None:
        self.full.close()


__all__ = ["SIZES", "MediaServer", "Size"]
