"""The application factory: a fresh app per call, docs, static files, security headers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from picpipe.web.app import STATIC, create_app
from tests.web.conftest import TestClient, WebSite


def test_fixture_site_has_every_role(web_site: WebSite) -> None:
    assert len(web_site.photos) >= 29
    assert web_site.portrait
    assert web_site.landscape
    assert web_site.on_this_day


def test_openapi_and_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/files" in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    # Offline: every asset the page loads is served here, none from a CDN.
    assert "cdn.jsdelivr" not in docs.text
    assert "unpkg" not in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/assets/{asset}" in docs.text
        answer = client.get(f"/docs/assets/{asset}")
        assert answer.status_code == 200, asset
        assert len(answer.content) > 10_000


def test_each_app_is_built_fresh(web_site: WebSite) -> None:
    first, second = create_app(web_site.settings), create_app(web_site.settings)
    assert first is not second
    assert first.state.ctx is not second.state.ctx
    with TestClient(first), TestClient(second):
        pass


def test_static_files_are_served_without_listings(client: TestClient) -> None:
    assert client.get("/static/").status_code == 404
    names = [p.name for p in STATIC.iterdir() if p.is_file()] if STATIC.is_dir() else []
    if names:
        assert client.get(f"/static/{names[0]}").status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _raw_request(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_picpipe_serve_answers_and_stops_cleanly(web_site: WebSite) -> None:
    port = _free_port()
    exe = Path(sys.executable).with_name("picpipe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    args = [
        str(exe),
        "--home",
        str(web_site.home_root),
        "--library",
        str(web_site.library_root),
        "serve",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        assert "server" not in health.headers
        photo = httpx.get(f"http://127.0.0.1:{port}/files?client=serve-test", timeout=10)
        assert photo.headers["content-type"] == "image/jpeg"
        key = min(web_site.photos)
        thumb = httpx.get(f"http://127.0.0.1:{port}/api/assets/{key}/small", timeout=10)
        assert thumb.status_code == 200
        # Dot segments reach the server unresolved here (no client clean-up): still nothing.
        for target in ("/files/../../etc/passwd", "/static/../app.py", "/api/assets/../../x"):
            answer = _raw_request(port, target)
            assert answer.startswith(b"HTTP/1.1 404"), (target, answer[:80])
            assert str(web_site.library_root).encode() not in answer
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    # uvicorn shuts the application down (catalog closed), then re-raises the SIGTERM it caught.
    assert server.returncode in (0, -signal.SIGTERM), err.decode()
    assert b"Application shutdown complete" in err
    assert f"http://127.0.0.1:{port}/".encode() in out


def test_login_looks_like_the_other_pages_and_says_where_the_token_is(
    client: TestClient,
) -> None:
    page = client.get("/login").text
    assert "/static/picpipe.css" in page
    assert 'class="topbar"' in page
    assert "serve.token" in page
    assert "PICPIPE_SERVE__TOKEN" in page
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in page


def test_dashboard_fits_a_phone_and_says_at_least_while_counting(client: TestClient) -> None:
    page = client.get("/dashboard", headers={"Accept": "text/html"}).text
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in page
    css = client.get("/static/picpipe.css").text
    assert "@media (max-width: 600px)" in css
    script = client.get("/static/dashboard.js").text
    assert "of at least" in script
