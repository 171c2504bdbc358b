"""Hostile requests get 4xx, the Host and Origin are checked, sessions end, `/login` is slow
to guess (findings 1, 2, 5, 6 and 7 of the security review; the bind check is in
test_security.py)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from picpipe.web.app import create_app
from picpipe.web.auth import COOKIE, OPEN_WARNING
from picpipe.web.hosts import HostPolicy, split_host
from picpipe.web.ranged import parse_range
from picpipe.web.server import MAX_FIELD, MAX_HEAD, MAX_LINE
from picpipe.web.sessions import FREE_FAILURES
from tests.web.conftest import TestClient, WebSite, with_serve

FULL = "a-full-token-of-32-characters-xx"
READ = "a-read-token-of-32-characters-xx"
MakeClient = Callable[..., TestClient]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- Host and Origin (finding 2) ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/files/list", "/api/assets", "/health", "/", "/login"])
def test_a_foreign_host_name_is_refused_even_on_an_open_server(
    client: TestClient, path: str
) -> None:
    response = client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert response.json()["code"] == "misdirected_request"
    assert client.get(path, headers={"Host": "evil.example:8080"}).status_code == 421


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080", "10.0.0.7", "a.localhost"],
)
def test_loopback_and_ip_hosts_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/api/stats", headers={"Host": host}).status_code == 200


def test_this_machines_name_is_answered(client: TestClient) -> None:
    name = socket.gethostname().lower()
    assert client.get("/api/stats", headers={"Host": f"{name}:8080"}).status_code == 200


@pytest.mark.parametrize("host", ["", "a b", "x/y", "[::1", "host:port", "user@host"])
def test_a_malformed_host_is_a_bad_request(client: TestClient, host: str) -> None:
    assert client.get("/api/stats", headers={"Host": host}).status_code == 400


def test_allowed_hosts_admit_a_proxy_name(app_client: MakeClient) -> None:
    http = app_client(allowed_hosts=["Photos.Example.org", "*.home.arpa"])
    assert http.get("/api/stats", headers={"Host": "photos.example.org"}).status_code == 200
    assert http.get("/api/stats", headers={"Host": "nas.home.arpa:443"}).status_code == 200
    assert http.get("/api/stats", headers={"Host": "example.org"}).status_code == 421
    assert split_host("[::1]:80") == ("::1", "80")
    assert not HostPolicy([], names=[]).allows("evil.example")
    assert HostPolicy(["*"], names=[]).allows("anything.example")


def test_state_changes_from_another_origin_are_refused(app_client: MakeClient) -> None:
    http = app_client(token=FULL, read_token=READ)
    form = {"token": FULL}
    cross = [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:9999"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ]
    for headers in cross:
        for path in ("/login", "/logout"):
            response = http.post(path, data=form, headers=headers, follow_redirects=False)
            assert response.status_code == 403, (path, headers)
            assert "set-cookie" not in response.headers
    for headers in (
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {},  # not a browser (curl, scripts)
    ):
        response = http.post("/login", data=form, headers=headers, follow_redirects=False)
        assert response.status_code == 303, headers
    # Reading from another origin is the browser's business (CORS); it is not refused here.
    assert http.get("/health", headers={"Origin": "https://evil.example"}).status_code == 200


def test_an_open_server_says_so_on_health(client: TestClient, app_client: MakeClient) -> None:
    assert client.get("/health").json()["warning"] == OPEN_WARNING
    assert "warning" not in app_client(token=FULL).get("/health").json()


# -- cookies and sessions (finding 7) -------------------------------------------------------


def test_the_session_cookie_is_strict_http_only_and_secure_behind_tls(web_site: WebSite) -> None:
    app = create_app(with_serve(web_site.settings, token=FULL))
    with TestClient(app, base_url="https://localhost") as http:
        response = http.post("/login", data={"token": FULL}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "secure" in cookie


def session(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


def _login(http: TestClient, token: str = FULL) -> str:
    response = http.post("/login", data={"token": token}, follow_redirects=False)
    assert response.status_code == 303
    value = response.cookies[COOKIE]
    http.cookies.clear()
    return value


def test_logout_ends_the_session_for_every_process_and_restart(web_site: WebSite) -> None:
    settings = with_serve(web_site.settings, token=FULL, read_token=READ)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        value = _login(first)
        cookie = session(value)
        assert first.get("/api/stats", headers=cookie).status_code == 200
        assert second.get("/api/stats", headers=cookie).status_code == 200  # another process
        first.post("/logout", headers=cookie, follow_redirects=False)
        assert first.get("/api/stats", headers=cookie).status_code == 401
    # A restart (a new process on the same catalog) does not bring it back.
    with TestClient(create_app(settings)) as third:
        assert third.get("/api/stats", headers=cookie).status_code == 401
        other = _login(third, READ)
        assert third.get("/api/stats", headers=session(other)).status_code == 200


def test_a_changed_token_ends_the_old_sessions(web_site: WebSite) -> None:
    settings = with_serve(web_site.settings, token=FULL)
    with TestClient(create_app(settings)) as http:
        value = _login(http)
    changed = with_serve(web_site.settings, token="another-token-of-32-characters-x")
    with TestClient(create_app(changed)) as http:
        assert http.get("/api/stats", headers=session(value)).status_code == 401


def test_login_is_throttled_per_client_address(
    app_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    http = app_client(token=FULL)
    caplog.set_level(logging.WARNING, logger="picpipe.web.sessions")
    for _ in range(FREE_FAILURES):
        assert http.post("/login", data={"token": "guess"}).status_code == 401
    assert http.post("/login", data={"token": "guess"}).status_code == 401  # counted, delayed
    for token in ("guess", FULL):  # while throttled not even the right token is tried
        throttled = http.post("/login", data={"token": token}, follow_redirects=False)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
    assert len([r for r in caplog.records if "wrong tokens" in r.getMessage()]) == 1


# -- hostile values (finding 5) -------------------------------------------------------------


async def _asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), *headers],
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 50000),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


HOSTILE_COOKIES = [
    b"picpipe_session=w.1700000000.abc.\xb2\xb2\xb2",
    b"picpipe_session=w.1700000000.abc." + "é".encode() * 32,
    b"picpipe_session=w." + b"9" * 5000 + b".abc.def",
    b"picpipe_session=" + b"." * 10_000,
    b'picpipe_session="unterminated',
    b"picpipe_session",
    b";;;=;=;",
]
HOSTILE_RANGES = [
    b"bytes=\xb2-",
    b"bytes=-\xb2",
    b"bytes=" + b"9" * 5000 + b"-",
    b"bytes=0-" + b"9" * 5000,
    b"bytes=\xd9\xa1-",
]


@pytest.mark.parametrize("cookie", HOSTILE_COOKIES)
def test_hostile_cookies_are_refused_not_crashed(web_site: WebSite, cookie: bytes) -> None:
    app = create_app(with_serve(web_site.settings, token=FULL))
    with TestClient(app):  # runs the lifespan
        key = min(web_site.photos)
        for path in ("/api/stats", f"/api/assets/{key}/small"):
            assert anyio.run(_asgi_get, app, path, [(b"cookie", cookie)]) == 401


@pytest.mark.parametrize("header", HOSTILE_RANGES)
def test_hostile_ranges_are_ignored_or_refused(
    client: TestClient, web_site: WebSite, header: bytes
) -> None:
    key = min(web_site.photos)
    status = anyio.run(_asgi_get, client.app, f"/api/assets/{key}/full", [(b"range", header)])
    assert status in (200, 416)
    assert parse_range(header.decode("latin-1"), 1000) in (None, False)


def test_an_unexpected_error_is_one_log_line_and_a_bare_500(
    web_site: WebSite, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(web_site.settings)

    @app.get("/test-crash")
    def crash() -> None:
        raise RuntimeError(f"boom with token {FULL}")

    caplog.set_level(logging.INFO)
    with TestClient(app, raise_server_exceptions=True) as http:
        response = http.get("/test-crash")
    assert response.status_code == 500
    assert response.json()["code"] == "internal"
    assert "Traceback" not in response.text
    assert FULL not in response.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is None
    assert "RuntimeError" in errors[0].getMessage()
    assert FULL not in errors[0].getMessage()


# -- the real server: head limits, warnings (findings 1 and 6) --------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Served:
    port: int
    process: subprocess.Popen[bytes]
    out: str = ""
    err: str = ""


@contextmanager
def serving(site: WebSite, *extra: str) -> Iterator[Served]:
    """A real `picpipe serve` on a free loopback port; its output is in the result after."""
    port = _free_port()
    exe = Path(sys.executable).with_name("picpipe")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    args = [str(exe), "--home", str(site.home_root), "--library", str(site.library_root)]
    server = subprocess.Popen(
        [*args, "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    served = Served(port, server)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield served
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
        served.out, served.err = out.decode(), err.decode()


def _send_raw(port: int, head: bytes, *, body_chunks: int = 0, chunk: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        try:
            conn.sendall(head)
            for _ in range(body_chunks):
                conn.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before everything was sent
        answer = b""
        try:
            while data := conn.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    return answer


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.mark.slow
def test_the_real_server_limits_request_heads(web_site: WebSite) -> None:
    with serving(web_site) as served:
        port, server = served.port, served.process
        ok = _send_raw(
            port, b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        assert ok.startswith(b"HTTP/1.1 200")
        big_field = b"X-Big: " + b"a" * (MAX_FIELD + 1) + b"\r\n"
        answer = _send_raw(
            port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + big_field + b"\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 431"), answer[:60]
        many = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 15_000) for i in range(MAX_HEAD // 15_000 + 1))
        answer = _send_raw(port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431"), answer[:60]
        long_target = b"/health?" + b"q" * (MAX_LINE + 1)
        answer = _send_raw(port, b"GET " + long_target + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 414"), answer[:60]
        answer = _send_raw(
            port, b"GET /api/assets HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.1 421"), answer[:60]
        # Six unauthenticated 40 MB headers (the review took the server to 376-531 MB).
        before = _rss_kb(server.pid)
        for _ in range(6):
            answer = _send_raw(
                port,
                b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Flood: ",
                body_chunks=640,
                chunk=b"z" * 65536,
            )
            assert answer.startswith(b"HTTP/1.1 431"), answer[:60]
        grown = _rss_kb(server.pid) - before
        assert grown < 20_000, f"the server grew by {grown} KB"
        print(f"RSS before {before} KB, growth after six 40 MB headers {grown} KB")
        again = _send_raw(
            port, b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        assert again.startswith(b"HTTP/1.1 200")


@pytest.mark.slow
def test_an_open_loopback_server_warns_once_at_start(web_site: WebSite) -> None:
    with serving(web_site) as served:
        for _ in range(3):
            health = httpx.get(f"http://127.0.0.1:{served.port}/health", timeout=5)
            assert health.json()["warning"] == OPEN_WARNING
    assert served.err.count(OPEN_WARNING) == 1, served.err


@pytest.mark.slow
@pytest.mark.parametrize("token", ["", "   "])
def test_a_blank_token_counts_as_none_for_the_bind_check(tmp_path: Path, token: str) -> None:
    from tests.conftest import run_cli

    result = run_cli(
        "--home",
        str(tmp_path / "home"),
        "serve",
        "--host",
        "0.0.0.0",
        env={"PICPIPE_SERVE__TOKEN": token},
        timeout=60,
    )
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no token is configured" in result.stderr
