"""A response that streams an already open file descriptor, with HTTP Range support.

Opening first and streaming the descriptor (rather than a path, as ``FileResponse`` does) lets
the caller decide before any header is sent whether the file can be read at all (a NAS that
went away answers 503, not a broken 200), and keeps an evicted cache entry readable to the end.

Range handling (RFC 9110): one ``bytes=`` range gets 206 with ``Content-Range``; a range that
starts past the end gets 416 with ``Content-Range: bytes */<size>``; a malformed or
multi-range header (non-ASCII digits, numbers of more than 18 digits) is ignored (the
whole file, 200), which the RFC allows: parsing never raises. ``If-Range`` with a
different validator also gets the whole file. Reads use ``os.pread`` in worker threads, so
several responses may share one descriptor's file.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.responses import Response

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.types import Receive, Scope, Send

CHUNK = 1 << 20
_NUMBER = re.compile(r"[0-9]{1,18}")


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """``(start, end)`` (end exclusive) for one satisfiable range; None to send everything;
    False when the range cannot be satisfied (416)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = (part.strip() for part in spec.strip().partition("-"))
    if not dash or not (first or last):
        return None
    # ASCII digits only (``str.isdigit`` accepts "²", which ``int`` refuses), and no more
    # than any file size needs (``int`` refuses 5,000 digits): anything else is ignored.
    if (first and not _NUMBER.fullmatch(first)) or (last and not _NUMBER.fullmatch(last)):
        return None
    if not first:  # the last N bytes
        count = int(last)
        if count == 0:
            return False
        return (max(0, size - count), size) if size else False
    start = int(first)
    end = size if not last else int(last) + 1
    if last and end <= start:
        return None  # "bytes=9-3" is invalid: ignore it
    if start >= size:
        return False
    return start, min(end, size)


class FdResponse(Response):
    """Stream ``size`` bytes of the open descriptor ``fd`` and close it afterwards.

    ``headers`` should carry the validators (ETag) and caching headers; ``Content-Length``,
    ``Content-Range`` and ``Accept-Ranges`` are set here. The descriptor is closed however the
    response ends (sent, client gone, HEAD, 416).
    """

    def __init__(
        self, fd: int, size: int, *, headers: Mapping[str, str], media_type: str | None
    ) -> None:
        super().__init__(content=None, status_code=200, headers=dict(headers), media_type=None)
        self.fd = fd
        self.size = size
        self.file_media_type = media_type or "application/octet-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            with contextlib.suppress(OSError):
                os.close(self.fd)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Headers(scope=scope)
        wanted = request.get("range")
        if_range = request.get("if-range")
        if if_range is not None and if_range != self.headers.get("etag"):
            wanted = None
        span = parse_range(wanted, self.size) if scope["method"] in ("GET", "HEAD") else None
        headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        headers.append((b"accept-ranges", b"bytes"))
        if span is False:
            headers = [(k, v) for k, v in headers if k not in (b"etag",)]
            headers += [
                (b"content-range", f"bytes */{self.size}".encode()),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 416, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        status, start, end = 200, 0, self.size
        if isinstance(span, tuple):
            status, (start, end) = 206, span
            headers.append((b"content-range", f"bytes {start}-{end - 1}/{self.size}".encode()))
        headers += [
            (b"content-type", self.file_media_type.encode("latin-1")),
            (b"content-length", str(end - start).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD" or start == end:
            await send({"type": "http.response.body", "body": b""})
            return
        if end - start <= CHUNK:  # most photos: one read, one send, nothing to watch
            await self._stream(send, start, end)
            return
        async with anyio.create_task_group() as group:

            async def stream() -> None:
                await self._stream(send, start, end)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            # ASGI before 2.4: ``send`` does not fail once the client is gone; watch for it.
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

    async def _stream(self, send: Send, start: int, end: int) -> None:
        offset = start
        while offset < end:
            want = min(CHUNK, end - offset)
            chunk = await anyio.to_thread.run_sync(os.pread, self.fd, want, offset)
            if not chunk:
                raise OSError(f"file ended at {offset} of {end} bytes")
            offset += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": offset < end})
