"""Who may read and who may change: tokens, the login cookie, and the ``/login`` page.

Two tokens come from the settings: ``serve.token`` (full access) and ``serve.read_token``
(read-only: kiosk, dashboard, wall frames). With neither configured the server is open.
A request proves a token by one of:

- ``Authorization: Bearer <token>`` or ``X-Picpipe-Token: <token>`` (either token);
- the ``picpipe_session`` cookie set by ``POST /login``: an HMAC-signed value naming the role,
  its issue time and a server-side session id (``web/sessions.py``), keyed by that role's
  token (never the token itself), so changing a token logs its sessions out and ``/logout``
  ends the session on every server process; HttpOnly, SameSite=Strict, Secure over HTTPS,
  valid 30 days. ``/login`` is throttled per client address (429 after 5 wrong tokens);
- ``?token=<read token>`` in the URL, for wall frames and Home Assistant picture cards that
  cannot send headers. Only the **read-only** token is accepted there (URLs end up in logs and
  histories), and only for reads.

Tokens are compared with ``hmac.compare_digest``. An unauthenticated browser page request
(``GET`` with ``Accept: text/html``) is redirected to ``/login?next=…``; anything else gets 401
JSON. A read-only token on a state-changing route gets 403.
"""

from __future__ import annotations

import hashlib  # HMAC-SHA256 signs the login cookie: a key, not content (hashing.py)
import hmac
import html
import math
import re
import secrets
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from picpipe.web.sessions import LoginThrottle

if TYPE_CHECKING:
    from picpipe.config import Settings
    from picpipe.web.sessions import SessionStore

COOKIE = "picpipe_session"
SESSION_SECONDS = 30 * 24 * 3600
_SESSION_CONTEXT = b"picpipe-session-v1"
# Said once when an open server starts and in every `/health` answer while it stays open.
OPEN_WARNING = (
    "no token is configured: every program and user on this machine can read and change "
    "the library (set serve.token)"
)


class Access(IntEnum):
    """What a request may do; ordered so that ``access >= Access.READ`` reads."""

    NONE = 0
    READ = 1
    WRITE = 2


@dataclass(frozen=True, slots=True)
class Guard:
    """The token check of one application, computed once from the settings.

    ``open`` is True when no token is configured: every request has full access.
    ``store`` keeps sessions server-side (so they can be revoked); without one (unit tests)
    a signed cookie is valid until it expires.
    """

    token: bytes | None
    read_token: bytes | None
    store: SessionStore | None = None
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @classmethod
    def from_settings(cls, settings: Settings, store: SessionStore | None = None) -> Guard:
        serve = settings.serve
        token = serve.token.get_secret_value().encode() if serve.token else None
        read = serve.read_token.get_secret_value().encode() if serve.read_token else None
        return cls(token or None, read or None, store)

    @property
    def open(self) -> bool:
        return self.token is None and self.read_token is None

    def access(self, request: Request) -> Access:
        """The access ``request`` proves (header, cookie, or read token in the URL)."""
        if self.open:
            return Access.WRITE
        presented = _presented_token(request)
        if presented is not None:
            return self.token_access(presented)
        cookie = request.cookies.get(COOKIE)
        if cookie:
            return self.session_access(cookie)
        query = request.query_params.get("token")
        if query and self.read_token and hmac.compare_digest(query.encode(), self.read_token):
            return Access.READ
        return Access.NONE

    def token_access(self, presented: str) -> Access:
        """The access a token grants: WRITE for the full token, READ for the read token."""
        value = presented.encode()
        # Both comparisons always run so the timing does not tell which token was close.
        full = self.token is not None and hmac.compare_digest(value, self.token)
        read = self.read_token is not None and hmac.compare_digest(value, self.read_token)
        if full:
            return Access.WRITE
        return Access.READ if read else Access.NONE

    def session_value(self, access: Access, *, now: float | None = None) -> str:
        """A signed cookie value for ``access`` (``role.issued.nonce.signature``)."""
        role = "w" if access is Access.WRITE else "r"
        issued = str(int(time.time() if now is None else now))
        nonce = self.store.create(role) if self.store else secrets.token_urlsafe(12)
        payload = f"{role}.{issued}.{nonce}"
        return f"{payload}.{self._sign(role, payload)}"

    def session_access(self, value: str, *, now: float | None = None) -> Access:
        """The access a cookie value grants (NONE when forged, expired, revoked or its token
        changed). Never raises, whatever bytes the cookie holds."""
        verified = self._verified(value, now=now)
        if verified is None:
            return Access.NONE
        role, session_id = verified
        if self.store is not None and not self.store.is_live(session_id, role):
            return Access.NONE
        return Access.WRITE if role == "w" else Access.READ

    def end_session(self, value: str) -> None:
        """Revoke the session a (genuine) cookie value names; anything else is ignored."""
        verified = self._verified(value)
        if verified is not None and self.store is not None:
            self.store.revoke(verified[1])

    def _verified(self, value: str, *, now: float | None = None) -> tuple[str, str] | None:
        """``(role, session id)`` of a cookie whose signature and age are right."""
        if not value.isascii() or len(value) > 512:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] not in ("w", "r") or not _DIGITS.fullmatch(parts[1]):
            return None
        role, issued = parts[0], int(parts[1])
        payload = ".".join(parts[:3])
        expected = self._sign(role, payload)
        if not expected or not hmac.compare_digest(parts[3].encode(), expected.encode()):
            return None
        age = (time.time() if now is None else now) - issued
        if not 0 <= age <= SESSION_SECONDS:
            return None
        return role, parts[2]

    def _sign(self, role: str, payload: str) -> str:
        secret = self.token if role == "w" else self.read_token
        if secret is None:
            return ""
        key = hmac.new(secret, _SESSION_CONTEXT, hashlib.sha256).digest()
        return hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()


_DIGITS = re.compile(r"[0-9]{1,12}")


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-picpipe-token") or None


def guard_of(request: Request) -> Guard:
    guard = request.app.state.guard
    assert isinstance(guard, Guard)
    return guard


def wants_html(request: Request) -> bool:
    """A browser navigating to a page (not an image, script or API call)."""
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def check_access(request: Request, needed: Access) -> None:
    """Raise the right HTTP answer unless ``request`` has at least ``needed`` access.

    Usable outside FastAPI's dependency system (a raw route that must stay fast).
    """
    have = guard_of(request).access(request)
    if have >= needed:
        return
    if have is Access.NONE:
        if wants_html(request):
            target = "/login?next=" + quote(_local_target(request), safe="")
            raise HTTPException(status_code=303, headers={"Location": target})
        raise HTTPException(
            status_code=401,
            detail="a token is required (Authorization: Bearer, X-Picpipe-Token, or log in)",
            headers={"WWW-Authenticate": 'Bearer realm="picpipe"'},
        )
    raise HTTPException(status_code=403, detail="this token may only read")


def require_read(request: Request) -> None:
    """FastAPI dependency: the read token, the full token or a login cookie (or no auth set)."""
    check_access(request, Access.READ)


def require_write(request: Request) -> None:
    """FastAPI dependency: the full token (or its login cookie); the read token gets 403."""
    check_access(request, Access.WRITE)


def _local_target(request: Request) -> str:
    path = request.url.path
    return f"{path}?{request.url.query}" if request.url.query else path


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this server, else ``/`` (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ord(ch) < 0x20 or ch == "\\" for ch in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


# -- the login page ------------------------------------------------------------------------

router = APIRouter(tags=["auth"])

# The same look as the other pages (their stylesheet and top bar), and where a token comes from.
_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Log in · picpipe</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/picpipe.css">
<style>.login{{max-width:24rem;margin:10vh auto;padding:0 1rem}}
.login input,.login button{{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;
margin:.3rem 0}}.error{{color:#b00020}}</style></head>
<body class="page-login"><header class="topbar"><a class="brand" href="/dashboard">picpipe</a>
</header><main class="login"><h1>Log in</h1>{message}
<form method="post" action="/login">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
</form>
<p class="muted">The token is the server's <code>serve.token</code> (full access) or
<code>serve.read_token</code> (read-only: dashboards, kiosks), set in picpipe's
<code>config.yaml</code> or as <code>PICPIPE_SERVE__TOKEN</code> /
<code>PICPIPE_SERVE__READ_TOKEN</code> where <code>picpipe serve</code> runs. Ask whoever runs
it; <code>picpipe config</code> there shows whether one is set (never the value).</p>
</main></body></html>
"""


def _login_page(next_target: str, message: str = "", status: int = 200) -> HTMLResponse:
    block = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    body = _LOGIN_PAGE.format(message=block, next=html.escape(safe_next(next_target)))
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/login", response_class=HTMLResponse, summary="Log-in form")
def login_form(
    next_target: Annotated[str, Query(alias="next", max_length=2048)] = "/",
) -> HTMLResponse:
    """A form asking for the access token; ``next`` is where to go afterwards (local only)."""
    return _login_page(next_target)


@router.post("/login", response_class=HTMLResponse, summary="Log in with a token")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=4096)],
    next_target: Annotated[str, Form(alias="next", max_length=2048)] = "/",
) -> Response:
    """Check the token; on success set the session cookie and redirect (303) to ``next``.

    A wrong token shows the form again with 401; after 5 wrong tokens from one address the
    form answers 429 with ``Retry-After`` (doubling) without checking the token. With no
    token configured there is nothing to log into and the redirect happens at once.
    """
    guard = guard_of(request)
    target = safe_next(next_target)
    if guard.open:
        return RedirectResponse(target, status_code=303)
    client = request.client.host if request.client else "unknown"
    wait = guard.throttle.wait_for(client)
    if wait > 0:
        page = _login_page(target, "Too many wrong tokens; try again later.", status=429)
        page.headers["Retry-After"] = str(math.ceil(wait))
        return page
    access = guard.token_access(token)
    if access is Access.NONE:
        guard.throttle.failed(client)
        return _login_page(target, "That token is not valid.", status=401)
    guard.throttle.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        guard.session_value(access),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout", summary="Log out")
def logout(request: Request) -> Response:
    """End the session (for every server process) and clear its cookie; go to the form."""
    value = request.cookies.get(COOKIE)
    if value:
        guard_of(request).end_session(value)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/logout", summary="Log out (from a link)")
def logout_link(request: Request) -> Response:
    """Like ``POST /logout``, for a plain link on a page."""
    return logout(request)
