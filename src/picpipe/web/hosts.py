"""Which ``Host`` a request may name, and which origins may change state.

`HostCheck` is a pure ASGI middleware, installed outermost (before the thumbnail fast path):

- **Host** (DNS rebinding): a page on ``evil.example`` whose name is made to resolve to
  127.0.0.1 reaches the server with ``Host: evil.example``. Accepted are loopback names
  (``localhost``, ``*.localhost``), this machine's names (host name, FQDN, ``<name>.local``),
  any IP literal (a page can only be *served from* an IP it names, so no rebinding), and
  ``serve.allowed_hosts`` (``photos.example.org``, ``*.example.org``; ``*`` accepts all).
  Anything else gets 421 Misdirected Request; a missing or malformed Host gets 400.
- **Origin** (cross-site requests): ``POST``/``PUT``/``PATCH``/``DELETE`` (``/login`` and
  ``/logout`` included) from a browser must come from this server's own origin: an
  ``Origin`` header naming another host than ``Host`` (or not in ``serve.allowed_hosts``), or
  ``Sec-Fetch-Site: cross-site``/``same-site``, gets 403. Requests with neither header come
  from programs, not browsers, and pass (they still need a token).

Both answers are the usual ``{"error", "code"}`` JSON and are logged at DEBUG only: a
scanner probing names must not fill the log.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_BROWSER_SAME = frozenset({b"same-origin", b"none"})


def machine_names() -> set[str]:
    """This machine's own names: host name, its first label, FQDN, and ``<name>.local``."""
    names = {"localhost"}
    for name in (socket.gethostname(), socket.getfqdn()):
        name = name.lower().rstrip(".")
        if name:
            short = name.split(".", 1)[0]
            names.update({name, short, f"{short}.local"})
    return names


def split_host(value: str) -> tuple[str, str] | None:
    """``(host, port)`` of a ``Host`` header value (port may be ""); None when malformed."""
    value = value.strip().lower()
    if not value or any(ch in value for ch in " /\\@?#"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return host, rest[1:]
    host, colon, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if colon and not port.isdigit():
        return None
    return host.rstrip("."), port


class HostPolicy:
    """The host names one application answers to (see the module docstring)."""

    def __init__(self, allowed: Iterable[str], names: Iterable[str] | None = None) -> None:
        self.exact = set(machine_names() if names is None else names)
        self.suffixes: list[str] = []
        self.any = False
        for entry in allowed:
            if entry == "*":
                self.any = True
            elif entry.startswith("*."):
                self.suffixes.append(entry[1:])
            else:
                self.exact.add(entry)
        self.configured = frozenset(e for e in allowed if e != "*")

    def allows(self, host: str) -> bool:
        """True when a request naming ``host`` (no port) is meant for this server."""
        if self.any or host in self.exact or host.endswith(".localhost"):
            return True
        if any(host.endswith(suffix) for suffix in self.suffixes):
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def allows_origin(self, origin: str, host_header: str) -> bool:
        """True when a browser's ``Origin`` is this server's own (same host and port as the
        request's ``Host``, or a configured allowed host, as behind a reverse proxy)."""
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        netloc = parts.netloc.lower()
        if netloc == host_header.strip().lower():
            return True
        host = (parts.hostname or "").rstrip(".")
        return host in self.configured or any(host.endswith(s) for s in self.suffixes)


class HostCheck:
    """Pure ASGI middleware applying a `HostPolicy` to every HTTP request."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = fetch_site = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
            elif key == b"origin":
                origin = value
            elif key == b"sec-fetch-site":
                fetch_site = value
        host_text = host.decode("latin-1") if host is not None else ""
        parsed = split_host(host_text)
        if parsed is None:
            await _refuse(send, 400, "a valid Host header is required", "bad_request")
            return
        if not self.policy.allows(parsed[0]):
            log.debug("refused Host %r on %s", host_text[:100], scope.get("path"))
            await _refuse(
                send,
                421,
                "this server does not answer to that host name (see serve.allowed_hosts)",
                "misdirected_request",
            )
            return
        if scope["method"] not in SAFE_METHODS and not self._same_origin(
            origin, fetch_site, host_text
        ):
            log.debug("refused a cross-origin %s %s", scope["method"], scope.get("path"))
            await _refuse(send, 403, "cross-origin requests may not change anything", "forbidden")
            return
        await self.app(scope, receive, send)

    def _same_origin(self, origin: bytes | None, fetch_site: bytes | None, host: str) -> bool:
        if origin is not None:
            return self.policy.allows_origin(origin.decode("latin-1"), host)
        if fetch_site is not None:
            return fetch_site.strip().lower() in _BROWSER_SAME
        return True  # not a browser: curl, scripts, Home Assistant


async def _refuse(send: Send, status: int, error: str, code: str) -> None:
    body = json.dumps({"error": error, "code": code}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
