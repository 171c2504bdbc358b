"""Tokens, the login cookie, bind refusal, key validation and error messages without paths."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import pytest
from fastapi import Depends
from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset
from picpipe.cli.serve import check_bind, is_loopback
from picpipe.errors import LibraryUnwritable, ServeRefused, UnreadableFile
from picpipe.web.app import create_app
from picpipe.web.auth import COOKIE, Access, Guard, require_write, safe_next
from picpipe.web.problems import public_message
from tests.conftest import run_cli
from tests.web.conftest import TestClient, WebSite, build_site, with_serve

FULL, READ = "full-secret-token", "read-only-token"
STRONG = "a-token-of-32-characters-or-more"
MakeClient = Callable[..., TestClient]


@pytest.fixture
def secured(app_client: MakeClient) -> TestClient:
    return app_client(token=FULL, read_token=READ)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/files",
        "/files/list",
        "/folders",
        "/cache/stats",
        "/watcher/status",
        "/api/assets",
        "/api/stats",
        "/api/albums",
        "/api/sessions",
        "/openapi.json",
        "/docs",
    ],
)
def test_everything_but_health_needs_a_token(secured: TestClient, path: str) -> None:
    response = secured.get(path)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert secured.get(path, headers=bearer(FULL)).status_code == 200
    assert secured.get(path, headers={"X-Picpipe-Token": READ}).status_code == 200
    assert secured.get(path, headers=bearer("wrong")).status_code == 401


def test_health_never_needs_a_token(secured: TestClient) -> None:
    assert secured.get("/health").json()["status"] == "ok"


def test_browsers_are_sent_to_the_login_page(secured: TestClient) -> None:
    response = secured.get(
        "/gallery?kind=photo", headers={"Accept": "text/html"}, follow_redirects=False
    )
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == ["/gallery?kind=photo"]
    assert "<form" in secured.get("/login").text


def test_login_sets_a_signed_cookie_not_the_token(secured: TestClient) -> None:
    response = secured.post(
        "/login", data={"token": FULL, "next": "/api/stats"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/api/stats"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    assert FULL not in cookie
    assert secured.get("/api/stats").status_code == 200  # the client keeps the cookie
    secured.get("/logout")
    assert secured.get("/api/stats").status_code == 401


def test_a_wrong_token_shows_the_form_again(secured: TestClient) -> None:
    response = secured.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert response.status_code == 401
    assert "not valid" in response.text
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x", ""]
)
def test_login_redirects_only_to_local_paths(secured: TestClient, target: str) -> None:
    response = secured.post("/login", data={"token": READ, "next": target}, follow_redirects=False)
    assert response.headers["location"] == "/"
    assert safe_next(target) == "/"
    assert safe_next("/kiosk?album=x") == "/kiosk?album=x"


def test_forged_expired_and_stale_cookies_are_refused() -> None:
    guard = Guard(FULL.encode(), READ.encode())
    value = guard.session_value(Access.READ)
    assert guard.session_access(value) is Access.READ
    _role, issued, nonce, signature = value.split(".")
    assert guard.session_access(f"w.{issued}.{nonce}.{signature}") is Access.NONE
    assert guard.session_access(value[:-1] + ("0" if value[-1] != "0" else "1")) is Access.NONE
    assert guard.session_access(value, now=int(issued) + 31 * 24 * 3600) is Access.NONE
    changed = Guard(FULL.encode(), b"a-new-read-token")
    assert changed.session_access(value) is Access.NONE  # a new token logs sessions out
    assert guard.session_access("garbage") is Access.NONE


def test_read_token_in_the_url_is_for_reading_only(secured: TestClient) -> None:
    assert secured.get("/files", params={"token": READ, "size": "tiny"}).status_code == 200
    # The full token never travels in URLs (logs, browser history): not accepted there.
    assert secured.get("/files", params={"token": FULL}).status_code == 401


def test_read_token_is_refused_where_state_changes(web_site: WebSite) -> None:
    app = create_app(with_serve(web_site.settings, token=FULL, read_token=READ))

    @app.post("/test-change", dependencies=[Depends(require_write)])
    def change() -> dict[str, bool]:
        return {"changed": True}

    with TestClient(app) as http:
        assert http.post("/test-change", headers=bearer(READ)).status_code == 403
        assert http.post("/test-change", headers=bearer(READ)).json()["code"] == "forbidden"
        assert http.post("/test-change", headers=bearer(FULL)).status_code == 200
        assert http.post("/test-change").status_code == 401
        http.post("/login", data={"token": READ})
        assert http.post("/test-change").status_code == 403


def test_content_addressed_bytes_are_private_when_tokens_guard_them(
    secured: TestClient, web_site: WebSite
) -> None:
    key = min(web_site.photos)
    response = secured.get(f"/api/assets/{key}/small", headers=bearer(READ))
    assert "private" in response.headers["cache-control"]


def test_security_headers_on_every_answer(client: TestClient) -> None:
    for path in ("/health", "/api/assets", "/nope"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"


# -- binding -----------------------------------------------------------------------------------


def test_binding_beyond_loopback_without_a_token_is_refused(tmp_path: Path) -> None:
    result = run_cli("--home", str(tmp_path / "home"), "serve", "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 4
    assert "refusing to serve" in result.stderr
    assert "--insecure-open" in result.stderr


def test_check_bind(web_site: WebSite) -> None:
    open_settings = web_site.settings
    for host in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(open_settings, host, insecure=False)
    for host in ("0.0.0.0", "::", "192.168.1.10", "photos.example.org"):
        assert not is_loopback(host)
        with pytest.raises(ServeRefused):
            check_bind(open_settings, host, insecure=False)
        check_bind(open_settings, host, insecure=True)
        check_bind(with_serve(open_settings, token=STRONG), host, insecure=False)
        check_bind(with_serve(open_settings, read_token=STRONG), host, insecure=False)
        # Blank tokens are no tokens; short ones are guessable: both refused beyond loopback.
        for weak in ("", "   ", "\t\n", "short-token"):
            with pytest.raises(ServeRefused):
                check_bind(with_serve(open_settings, token=weak), host, insecure=False)
        with pytest.raises(ServeRefused, match=r"serve\.read_token is shorter"):
            check_bind(
                with_serve(open_settings, token=STRONG, read_token=READ), host, insecure=False
            )


# -- keys and paths ----------------------------------------------------------------------------

TRAVERSALS = [
    "..",
    "../../etc/passwd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "..%5C..%5Cwindows",
    "..\\..\\windows",
    "abc%00.jpg",
    "a" * 64 + "%00",
    "a" * 128,
    "a" * 10_000,
    ".%2e/.%2e/x",
    "%252e%252e%252f",
    "%c0%ae%c0%ae/",
]


async def _raw_get(app: Any, raw_path: str) -> tuple[int, bytes]:
    """One GET with exactly this path, as uvicorn hands it over (no client-side clean-up:
    httpx would resolve ``..`` and re-encode before the app saw it)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 50000),
    }
    status, body = 0, b""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app(scope, receive, send)
    return status, body


@pytest.mark.parametrize("attempt", TRAVERSALS)
def test_path_traversal_attempts_fail_without_leaking_paths(
    client: TestClient, web_site: WebSite, attempt: str
) -> None:
    key = min(web_site.photos)
    for path in (
        f"/files/{attempt}",
        f"/files/{attempt}.jpg",
        f"/api/assets/{attempt}",
        f"/api/assets/{attempt}/full",
        f"/api/assets/{key}/{attempt}",
        f"/static/{attempt}",
    ):
        status, body = anyio.run(_raw_get, client.app, path)
        assert status in (400, 404), (path, status)
        text = body.decode("utf-8", "replace")
        assert str(web_site.library_root) not in text
        assert str(web_site.home_root) not in text
        assert "root:" not in text


def test_no_directory_listings(client: TestClient) -> None:
    for path in ("/static", "/static/", "/files/", "/thumbs/", "/originals/"):
        assert client.get(path).status_code == 404


def test_a_symlink_in_the_library_does_not_lead_outside(tmp_path: Path) -> None:
    site = build_site(tmp_path / "site", real_media=False)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8\xff TOP SECRET")
    catalog = open_catalog(site.settings.catalog_url)
    try:
        with catalog.session() as db:
            asset = db.scalar(select(Asset).where(Asset.kind == "photo").limit(1))
            assert asset is not None
            key, original = asset.sha256, site.library_root / asset.library_path
    finally:
        catalog.close()
    original.unlink()
    original.symlink_to(secret)
    thumb = site.home_root / "thumbs" / "small" / key[:2] / f"{key}.jpg"
    thumb.unlink()
    thumb.symlink_to(secret)
    with TestClient(create_app(site.settings)) as http:
        for url in (
            f"/api/assets/{key}/full",
            f"/api/assets/{key}/small",
            f"/files/{key}.jpg?size=full",
            f"/files/{key}.jpg?size=small",
        ):
            response = http.get(url)
            assert b"TOP SECRET" not in response.content, url
            assert str(tmp_path) not in response.text
            if response.status_code != 200:
                assert response.status_code in (403, 404, 503), (url, response.status_code)
            elif url.endswith("/full"):
                # The real original, fetched from the source it came from, hash-checked.
                assert hashlib.sha256(response.content).hexdigest() == key


# -- errors ------------------------------------------------------------------------------------


def test_picpipe_errors_lose_their_paths_on_the_way_out() -> None:
    error = LibraryUnwritable(root="/srv/photos/library", detail="read-only file system")
    shown = public_message(error, ("/srv/photos/library", "/home/me/.local/share/picpipe"))
    assert "/srv" not in shown
    assert "read-only file system" in shown
    item = UnreadableFile(path="/home/me/Pictures/IMG_1.jpg", detail="permission denied")
    assert (
        public_message(item)
        == "IMG_1.jpg: cannot be read (permission denied); check its permissions"
    )


def test_unexpected_errors_answer_a_generic_500(web_site: WebSite) -> None:
    app = create_app(web_site.settings)

    @app.get("/test-crash")
    def crash() -> None:
        raise RuntimeError(f"boom at {web_site.library_root}/secret with token {FULL}")

    @app.get("/test-library-down")
    def library_down() -> None:
        raise LibraryUnwritable(root=str(web_site.library_root), detail="not mounted")

    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.get("/test-crash")
        assert response.status_code == 500
        assert response.json() == {
            "error": "internal error; the server log has the details",
            "code": "internal",
        }
        down = http.get("/test-library-down")
        assert down.status_code == 503
        assert down.json()["code"] == "library_unavailable"
        assert down.headers["retry-after"]
        assert str(web_site.library_root) not in down.text
        assert "<library>" in down.text


def test_the_catalog_closes_with_the_app(web_site: WebSite) -> None:
    app = create_app(web_site.settings)
    with TestClient(app) as http:
        assert http.get("/health").status_code == 200
    assert os.path.exists(web_site.home_root / "catalog.db")
