"""Hot thumbnail hits answered before FastAPI routing, and the trusted nginx accel header.

`FastThumbs` is a pure ASGI middleware. For ``GET|HEAD /api/assets/{sha256}/{tiny|small|medium}``
whose thumbnail is already in the `ThumbMemo`, it checks the token with the application's
`Guard` (the same check every route uses), answers 304 or the bytes with precomputed headers
and returns; everything else (a miss, a refused token, other query parameters, other paths)
goes to the application unchanged, which answers it the slow, complete way and fills the
memo. Measured with ``bench/serve_bench.py``: routing, dependency injection and response
objects cost several times more than the thumbnail itself.

Behind nginx (``docs/nginx-front.conf``) the proxy sets ``X-Picpipe-Accel: <prefix>`` on every
request it forwards; `accel_prefix` trusts it only when the app listens on loopback, or the
peer is loopback or a Unix socket (the proxy on this machine), and only in the shape
``/name/…/``. The app then checks the token
exactly as before and answers an empty 200 with ``X-Accel-Redirect: <prefix>thumbs/…``
(or ``library/…``, ``cache/…`` for full resolution); nginx sends the file from an
``internal`` location. A client cannot use the header to read anything: nginx overwrites it,
the answer carries no bytes, and the auth check has already passed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request

from picpipe.web.auth import Access

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from picpipe.web.auth import Guard
    from picpipe.web.thumbmemo import ThumbMemo

ACCEL_HEADER = b"x-picpipe-accel"
PREFIX = "/api/assets/"
_SHA = re.compile(r"[0-9a-f]{64}")
_SIZES = frozenset(("tiny", "small", "medium"))
_ACCEL_PREFIX = re.compile(r"/(?:[A-Za-z0-9_-]+/)+")
# What the application's SecurityHeaders middleware adds to every other answer.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def accel_prefix(scope: Scope) -> str | None:
    """The nginx internal prefix to redirect to, when a trusted local proxy sent one.

    Trusted when the server listens on loopback only (the documented front: nothing but local
    processes can connect) or the connection comes from loopback or a Unix socket. The peer
    is not always known: uvicorn's proxy-header support replaces it with the address from
    ``X-Forwarded-For``, which is why the listening address counts too.
    """
    value: str | None = None
    for key, raw in scope.get("headers", ()):
        if key == ACCEL_HEADER:
            value = bytes(raw).decode("latin-1").strip()
            break
    if value is None or not _ACCEL_PREFIX.fullmatch(value):
        return None
    client = scope.get("client")
    if client is None or _is_loopback(client[0]) or _is_loopback(scope.get("server")):
        return value
    return None


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple | list):
        address = address[0] if address else None
    if not isinstance(address, str):
        return False
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return parsed.is_loopback


class FastThumbs:
    """ASGI middleware serving remembered thumbnails; see the module docstring.

    Install it outermost (``app.add_middleware(FastThumbs, memo=…, guard=…)`` after the other
    middlewares): it adds the same security headers the application adds elsewhere.
    """

    def __init__(self, app: ASGIApp, *, memo: ThumbMemo, guard: Guard) -> None:
        self.app = app
        self.memo = memo
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(PREFIX) and await self._answer(scope, send):
            return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send) -> bool:
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            return False
        sha256, slash, size = scope["path"][len(PREFIX) :].partition("/")
        if not slash or size not in _SIZES or not _SHA.fullmatch(sha256):
            return False
        if scope["query_string"] and not _only_token(scope["query_string"]):
            return False
        entry = self.memo.lookup(sha256, size)
        if entry is None:
            return False
        if not self.guard.open and self.guard.access(Request(scope)) < Access.READ:
            return False  # the application answers 401 or the log-in redirect
        if_none_match = None
        accel = None
        for key, value in scope["headers"]:
            if key == b"if-none-match":
                if_none_match = value
            elif key == ACCEL_HEADER:
                accel = accel_prefix(scope)
        if if_none_match is not None and _matches(if_none_match, entry.etag.encode()):
            await send(
                {
                    "type": "http.response.start",
                    "status": 304,
                    "headers": [*entry.headers_304, *SECURITY_HEADERS],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return True
        if accel is not None:
            headers = [
                (b"content-type", entry.media_type.encode()),
                *entry.headers_304,
                (b"x-accel-redirect", (accel + entry.accel_path(sha256, size)).encode()),
                (b"content-length", b"0"),
                *SECURITY_HEADERS,
            ]
            body = b""
        else:
            headers = [*entry.headers_200, *SECURITY_HEADERS]
            body = b"" if method == "HEAD" else entry.body
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True


def _only_token(query: bytes) -> bool:
    return all(key == "token" for key, _ in parse_qsl(query.decode("latin-1")))


def _matches(header: bytes, etag: bytes) -> bool:
    if header.strip() == b"*":
        return True
    for candidate in header.split(b","):
        candidate = candidate.strip()
        if candidate.startswith(b"W/"):
            candidate = candidate[2:]
        if candidate == etag:
            return True
    return False
