"""The HTTP/1.1 protocol of ``picpipe serve``: uvicorn's httptools protocol with size limits.

uvicorn's httptools protocol reads request heads of any size (six 40 MB headers took a
server to half a gigabyte before it answered). `LimitedHttpProtocol` feeds the parser in
slices of `STEP` bytes and counts the head as it arrives, so memory stays bounded:

- a request line (the target) over `MAX_LINE` bytes gets **414 URI Too Long**;
- one header field (name + value) over `MAX_FIELD` bytes, or a head (request line and all
  headers) over `MAX_HEAD` bytes, gets **431 Request Header Fields Too Large**.

Either answer closes the connection; the application never sees the request. Refusals
are logged at DEBUG only (a flood of them must not fill the log).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

MAX_LINE = 16 * 1024
MAX_FIELD = 16 * 1024
MAX_HEAD = 64 * 1024
STEP = 8 * 1024

_REASONS = {414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class LimitedHttpProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that refuses oversized request heads (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refused: int | None = None

    def data_received(self, data: bytes) -> None:
        for start in range(0, len(data), STEP):
            piece = data[start : start + STEP]
            if self._in_head:
                self._head_bytes += len(piece)
            super().data_received(piece)
            if self.transport.is_closing():
                return
            status = self._refused
            if status is None and self._in_head and self._head_bytes > MAX_HEAD:
                status = 431
            if status is not None:
                self._refuse(status)
                return

    def on_message_begin(self) -> None:
        # The slice holding this start was not counted when a body came before it in the
        # same slice (keep-alive): such a head may run up to STEP bytes over MAX_HEAD.
        super().on_message_begin()
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_LINE:
            self._refused = 414

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > MAX_FIELD:
            self._refused = 431
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._refused is not None:
            return  # answered by data_received; the application never sees it
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused is None:
            super().on_message_complete()

    def _refuse(self, status: int) -> None:
        reason = _REASONS[status]
        log.debug("refused a request head: %d %s", status, reason.decode())
        body = b'{"error":"request head too large","code":"too_large"}'
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n" % (status, reason)
            + b"content-type: application/json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()
