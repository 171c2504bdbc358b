"""The fault proxy itself, in front of a small loopback HTTP server and a TCP echo server."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.servers.faultproxy import FaultProxy


class _Handler(BaseHTTPRequestHandler):
    """POST/PUT: answers the body's length and sha256 (and records complete bodies);
    GET /bytes/N: answers N bytes."""

    protocol_version = "HTTP/1.1"  # keep-alive, as S3 and Azure clients use

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        if len(body) < length:
            return  # the client went away mid-body
        self.server.bodies.append(body)  # type: ignore[attr-defined]
        self._answer(json.dumps({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}))

    def do_POST(self) -> None:
        self.do_PUT()

    def do_GET(self) -> None:
        size = int(self.path.rsplit("/", 1)[1])
        self._answer(b"x" * size)

    def _answer(self, body: str | bytes) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[bytes] = []

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients cut off by the proxy are the point of these tests


@pytest.fixture
def backend() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(backend: _Server) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", backend.server_address[1], seed=1) as running:
        yield running


def _put(proxy: FaultProxy, body: bytes, conn: http.client.HTTPConnection | None = None) -> int:
    """One PUT on ``conn`` (or a new connection, closed after); the answer's status."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        conn.request("PUT", "/thing", body=body)
        answer = conn.getresponse()
        data = answer.read()
    finally:
        if own:
            conn.close()
    if answer.status == 200:
        assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()
    return answer.status


def test_forwards_every_request_on_a_kept_alive_connection(proxy: FaultProxy) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    for size in (0, 10, 70_000, 3 << 20):
        assert _put(proxy, bytes(range(256)) * (size // 256) + b"!" * (size % 256), conn) == 200
    conn.request("GET", "/bytes/500000")
    assert len(conn.getresponse().read()) == 500_000
    conn.close()
    counts = proxy.counts()
    assert (counts["connections"], counts["units"], proxy.injected) == (1, 5, 0)


def test_status_fault_answers_without_forwarding(proxy: FaultProxy, backend: _Server) -> None:
    proxy.faults("status", statuses=(503,), limit=1)
    assert _put(proxy, b"a" * 1000) == 503
    assert backend.bodies == []
    assert _put(proxy, b"b" * 1000) == 200
    assert proxy.counts()["status"] == 1


def test_status_fault_draws_among_the_statuses_given(proxy: FaultProxy) -> None:
    proxy.faults("status", statuses=(500, 429))
    seen = {_put(proxy, b"x") for _ in range(12)}
    assert seen == {500, 429}


def test_every_kth_request_gets_the_fault(proxy: FaultProxy) -> None:
    proxy.faults("status", every=3)
    statuses = [_put(proxy, b"x") for _ in range(9)]
    assert statuses == [200, 200, 503] * 3


def test_drop_cuts_an_upload_in_the_middle(proxy: FaultProxy, backend: _Server) -> None:
    proxy.faults("drop", after_bytes=100_000, limit=1)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _put(proxy, b"z" * (1 << 20))
    assert backend.bodies == []
    assert proxy.counts()["drop"] == 1
    assert _put(proxy, b"z" * (1 << 20)) == 200  # limit reached: forwarding again


def test_drop_at_the_end_leaves_the_server_done_and_the_client_unanswered(
    proxy: FaultProxy, backend: _Server
) -> None:
    proxy.faults("drop", after_bytes=10**9, limit=1)  # clamped to the request's length
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _put(proxy, b"complete")
    deadline = time.monotonic() + 5
    while not backend.bodies and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.bodies == [b"complete"]


def test_random_drop_points_fall_inside_the_request(proxy: FaultProxy, backend: _Server) -> None:
    proxy.faults("drop")
    for _ in range(5):
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            _put(proxy, b"q" * 200_000)
    assert proxy.counts()["drop"] == 5
    assert proxy.counts()["missed"] == 0


def test_reset_sends_a_tcp_rst(proxy: FaultProxy) -> None:
    proxy.faults("reset", after_bytes=0, limit=1)
    with pytest.raises(ConnectionResetError):
        _put(proxy, b"r" * 1000)
    assert proxy.counts()["reset"] == 1


def test_stall_outlasts_a_short_client_timeout(proxy: FaultProxy) -> None:
    proxy.faults("stall", stall=3.0, after_bytes=0, limit=1)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _put(proxy, b"s" * 1000, conn)
    assert time.monotonic() - started < 2
    conn.close()
    assert _put(proxy, b"s") == 200  # other connections are not stalled
    assert proxy.counts()["stall"] == 1


def test_a_stall_shorter_than_the_timeout_only_delays(proxy: FaultProxy) -> None:
    proxy.faults("stall", stall=0.3, limit=1)
    started = time.monotonic()
    assert _put(proxy, b"d" * 5000) == 200
    assert time.monotonic() - started >= 0.3


def test_cut_shortens_an_answer(proxy: FaultProxy) -> None:
    proxy.faults("cut", after_bytes=1000, limit=1)
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    conn.request("GET", "/bytes/100000")
    with pytest.raises(http.client.IncompleteRead):
        conn.getresponse().read()
    conn.close()
    assert proxy.counts()["cut"] == 1


def test_the_same_seed_gives_the_same_faults(backend: _Server) -> None:
    def run(seed: int) -> list[int]:
        with FaultProxy("127.0.0.1", backend.server_address[1], seed=seed) as proxy:
            proxy.faults("status", probability=0.4, statuses=(500, 503, 429))
            return [_put(proxy, b"p") for _ in range(20)]

    first = run(7)
    assert first == run(7)
    assert 0 < sum(s != 200 for s in first) < 20


def test_faults_are_validated(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown"):
        proxy.faults("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        proxy.faults("drop", every=0)


class _Echo(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[_Echo]:
    server = _Echo(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _echo_round(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with suppress(OSError):  # the proxy may have cut the connection already
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        got = b""
        try:
            while data := sock.recv(65536):
                got += data
        except ConnectionResetError:
            pass
        return got


def test_tcp_mode_treats_each_connection_as_one_unit(echo: _Echo) -> None:
    with FaultProxy("127.0.0.1", echo.server_address[1], http=False) as proxy:
        assert _echo_round(proxy.port, b"hello" * 100) == b"hello" * 100
        proxy.faults("drop", after_bytes=10, limit=1)
        assert len(_echo_round(proxy.port, b"hello" * 100)) <= 10
        assert _echo_round(proxy.port, b"again") == b"again"
        assert proxy.counts()["drop"] == 1
        with pytest.raises(ValueError, match="http"):
            proxy.faults("status")


def test_a_dead_server_looks_like_a_closed_connection() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with (
        FaultProxy("127.0.0.1", dead_port) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
    ):
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
        assert answer == b""


def test_close_cuts_open_connections_and_stops_its_threads(backend: _Server) -> None:
    before = {t for t in threading.enumerate() if t.name.startswith("faultproxy")}
    proxy = FaultProxy("127.0.0.1", backend.server_address[1])
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    assert _put(proxy, b"open", conn) == 200
    proxy.faults("stall", stall=30.0, after_bytes=0)
    stalled = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    stalled.request("PUT", "/thing", body=b"waiting")
    started = time.monotonic()
    proxy.close()
    assert time.monotonic() - started < 3  # no waiting out the stall
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        stalled.getresponse()
    conn.close()
    stalled.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    alive = {t for t in threading.enumerate() if t.name.startswith("faultproxy")} - before
    assert not alive
