"""A real HTTP/1.1 server on 127.0.0.1 for spec-built fakes, with socket-level faults.

Why not an ASGI app under uvicorn: the faults the fakes must produce live below ASGI — answer
before the request body was read and then reset the connection (what Immich's duplicate check
does to a client still sending), or drop a connection without any answer. The standard
library's threaded server hands us the socket, so each fault is a few lines.

The app is a plain callable ``app(request) -> Response``; raise `Drop` to close the connection
without answering (`Faults` scripts that, errors and stalls for the next requests). A request
body is read only when the app asks for it (``request.body()``); when the app answered without
reading it, the rest is drained so the connection stays usable, unless the response asks for
``reset``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


class Drop(Exception):
    """Raised by an app: close the connection at once (RST), sending nothing."""


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes] = b""
    content_type: str = "application/json"
    length: int | None = None  # needed when body is an iterable
    headers: dict[str, str] = field(default_factory=dict)
    reset: bool = False  # after answering, close with the body unread (the client sees a reset)


class Request:
    """One request as the app sees it; the body is read on demand."""

    def __init__(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.path = parts.path
        self.query: dict[str, list[str]] = parse_qs(parts.query, keep_blank_values=True)
        self.headers: dict[str, str] = {k.lower(): v for k, v in handler.headers.items()}
        self._handler = handler
        self._body: bytes | None = None

    @property
    def body_read(self) -> bool:
        return self._body is not None

    def body(self) -> bytes:
        if self._body is None:
            self._body = self._handler.read_body()
        return self._body


App = Callable[[Request], Response]


@dataclass
class _Fault:
    kind: str  # fail | drop | stall
    count: int
    operation: str | None
    status: int = 503
    after_body: bool = False
    seconds: float = 0.0


class Faults:
    """Scripted failures for the next requests, by operation name (None: any request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Fault] = []

    def fail_next(self, count: int, status: int = 503, operation: str | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and an error body)."""
        self._add(_Fault("fail", count, operation, status=status))

    def drop_next(self, count: int, operation: str | None = None, after_body: bool = False) -> None:
        """Reset the next connections without an answer; ``after_body``: only after the
        request was processed (an upload is stored, its answer lost)."""
        self._add(_Fault("drop", count, operation, after_body=after_body))

    def stall_next(self, count: int, seconds: float, operation: str | None = None) -> None:
        """Wait ``seconds`` before answering (a client's read timeout fires first)."""
        self._add(_Fault("stall", count, operation, seconds=seconds))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def apply(self, operation: str, request: Request, answer: Callable[[], Response]) -> Response:
        """``answer()``, unless a pending fault for ``operation`` changes what happens."""
        fault = self._take(operation)
        if fault is None:
            return answer()
        if fault.kind == "stall":
            time.sleep(fault.seconds)
            return answer()
        if fault.kind == "fail":
            phrase = HTTPStatus(fault.status).phrase
            body = {"message": phrase, "error": phrase, "statusCode": fault.status}
            return Response(fault.status, json.dumps(body).encode())
        if fault.after_body:
            answer()
            request.body()
        raise Drop

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._pending.append(fault)

    def _take(self, operation: str) -> _Fault | None:
        with self._lock:
            for fault in self._pending:
                if fault.operation in (None, operation):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._pending.remove(fault)
                    return fault
        return None


class LoopbackServer:
    """Serve ``app`` on a free port of 127.0.0.1 from a background thread."""

    def __init__(self, app: App) -> None:
        handler = type("Handler", (_Handler,), {"app": staticmethod(app)})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive client does not hold a thread forever
    app: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the fake's counters, not its access log

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK
        # add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _dispatch(self) -> None:
        request = Request(self)
        try:
            response = self.app(request)
        except Drop:
            self._reset()
            return
        except Exception as exc:  # a bug in the fake: say so instead of dropping the connection
            log.exception("the fake crashed on %s %s", request.method, request.path)
            body = json.dumps({"message": f"the fake crashed: {exc!r}", "statusCode": 500})
            response = Response(500, body.encode())
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        body = response.body
        length = len(body) if isinstance(body, bytes) else response.length
        self.send_header("Content-Length", str(length))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.reset:
            self.send_header("Connection", "close")
        self.end_headers()
        if isinstance(body, bytes):
            self.wfile.write(body)
        else:
            for chunk in body:
                self.wfile.write(chunk)
        self.wfile.flush()
        if response.reset and not request.body_read:
            self._close_unread()
        elif not request.body_read:
            request.body()  # drain what the client still sends, keep the connection

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815 - stdlib names

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _close_unread(self) -> None:
        # FIN after the answer; closing with the unread body still queued makes the kernel
        # send RST, so a client still writing sees a broken pipe or a reset.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.close()
        except OSError:
            pass

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, the way a crashed or impatient server looks.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()
