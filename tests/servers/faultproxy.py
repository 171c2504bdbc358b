"""A fault-injecting TCP proxy for tests: put it between a client and any loopback server.

    with FaultProxy("127.0.0.1", server.port, seed=7) as proxy:
        proxy.faults("drop", "status", probability=0.3, statuses=(503, 429))
        ...  # the client talks to proxy.url (or 127.0.0.1:proxy.port)
        proxy.faults()  # back to plain forwarding
        assert proxy.counts()["drop"] > 0

Units: with ``http=True`` (the default) every HTTP/1.1 request is one chance of a fault — the
proxy follows request boundaries on the client→server stream (by Content-Length), so keep-alive
connections get faults too. A request without a length (chunked) makes the rest of its
connection one unit. With ``http=False`` (SMB, any TCP protocol) each connection is one unit.

Kinds:
- ``drop``: once ``after_bytes`` bytes of the unit have gone upstream, close both sides (FIN) —
  an upload cut in the middle. The point is clamped to the request's length, so a fault planned
  for a request always happens (at the very end: the server got it all, the client no answer).
- ``reset``: the same, with a TCP RST to the client (SO_LINGER 0).
- ``stall``: at that point stop forwarding both ways for ``stall`` seconds, then go on; a client
  whose timeout is shorter gives up first.
- ``status`` (HTTP only): answer the request with a raw ``HTTP/1.1 503`` (or another of
  ``statuses``) without forwarding it, then close the connection.
- ``cut``: forward the request, then close after ``after_bytes`` bytes of the answer (a download
  cut short; missed when the answer is shorter).
``after_bytes=None`` (the default) draws the point: anywhere in the request (HTTP with a length),
the first 64 KiB (other units), the first 512 bytes of the answer (``cut``).

Which units get a fault: ``every=k`` (the k-th, 2k-th… unit since ``faults`` was called) or
``probability=p``, at most ``limit`` in all; the kind is drawn among ``kinds`` (repeat a kind to
weigh it). Every draw comes from ``random.Random(seed)``, so a sequential client sees the same
faults on every run. ``counts()``: connections, units, each kind injected, and missed.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

Kind = Literal["drop", "reset", "stall", "status", "cut"]
KINDS: tuple[Kind, ...] = ("drop", "reset", "stall", "status", "cut")
_RECV = 256 * 1024
_MAX_HEAD = 64 * 1024
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


@dataclass(frozen=True)
class FaultPlan:
    """What ``FaultProxy.faults`` configured; no kinds = plain forwarding."""

    kinds: tuple[Kind, ...] = ()
    every: int | None = None
    probability: float | None = None
    after_bytes: int | None = None
    stall: float = 5.0
    statuses: tuple[int, ...] = (503,)
    limit: int | None = None


@dataclass
class _Fault:
    kind: Kind
    at: int | None  # bytes before it fires; None = draw once the unit's length is known
    status: int
    stall: float


class FaultProxy:
    """Forward 127.0.0.1:``port`` to ``target_host:target_port`` and inject faults on demand.

    A context manager; ``close()`` stops accepting, cuts every open connection and joins the
    threads (all daemons, so a failing test never hangs the interpreter).
    """

    def __init__(
        self, target_host: str, target_port: int, *, seed: int = 0, http: bool = True
    ) -> None:
        self.target = (target_host, target_port)
        self.http = http
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.host, self.port = self._listener.getsockname()[:2]
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._plan = FaultPlan()
        self._units_in_plan = 0
        self._planned = 0
        self._counts: Counter[str] = Counter()
        self._links: set[_Link] = set()
        self._threads: set[threading.Thread] = set()
        self._closed = threading.Event()
        self._acceptor = self._spawn(self._accept_loop, "faultproxy-accept")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def faults(
        self,
        *kinds: Kind,
        every: int | None = None,
        probability: float | None = None,
        after_bytes: int | None = None,
        stall: float = 5.0,
        statuses: tuple[int, ...] = (503,),
        limit: int | None = None,
    ) -> None:
        """Inject ``kinds`` from now on (see the module docstring); no kinds: stop injecting.

        With kinds and neither ``every`` nor ``probability``, every unit gets a fault.
        """
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {KINDS}")
        if "status" in kinds and not self.http:
            raise ValueError("status faults need http=True")
        if every is not None and every < 1:
            raise ValueError("every must be >= 1")
        if kinds and every is None and probability is None:
            every = 1
        with self._lock:
            self._plan = FaultPlan(
                tuple(kinds), every, probability, after_bytes, stall, tuple(statuses), limit
            )
            self._units_in_plan = 0
            self._planned = 0

    def counts(self) -> dict[str, int]:
        """connections, units, drop, reset, stall, status, cut, missed (a copy)."""
        with self._lock:
            return {k: self._counts[k] for k in ("connections", "units", *KINDS, "missed")}

    @property
    def injected(self) -> int:
        """Faults that happened so far (every kind)."""
        counts = self.counts()
        return sum(counts[k] for k in KINDS)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._acceptor.join(timeout=5)  # ends within its 0.1 s accept timeout; then no new links
        self._listener.close()
        with self._lock:
            links = list(self._links)
            threads = list(self._threads)
        for link in links:
            link.close()
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connections -----------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True)
        thread.start()
        with self._lock:  # after start: close() may join anything in the set
            self._threads.add(thread)
        return thread

    def _run(self, target: Callable[..., None], *args: object) -> None:
        try:
            target(*args)
        finally:
            with self._lock:  # (a thread that ends before _spawn adds it stays: joins at once)
                self._threads.discard(threading.current_thread())

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._count("connections")
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the client sees a closed connection, as with a dead server
                continue
            link = _Link(client, upstream, self._count)
            with self._lock:
                self._links.add(link)
            if self._closed.is_set():
                link.close()
                return
            self._spawn(self._pump_requests, "faultproxy-up", link)
            self._spawn(self._pump_answers, "faultproxy-down", link)

    def _pump_requests(self, link: _Link) -> None:
        try:
            if self.http:
                self._forward_http(link)
            else:
                self._forward_unit(link, b"", None, self._draw())
        except OSError:
            link.close()
        # A normal end (the client half-closed) leaves the answer flowing; _pump_answers closes.

    def _forward_http(self, link: _Link) -> None:
        pending = b""
        while True:
            while (end := pending.find(b"\r\n\r\n")) < 0:
                if len(pending) > _MAX_HEAD:  # not HTTP after all: one raw unit
                    self._forward_unit(link, pending, None, self._draw())
                    return
                data = link.client.recv(_RECV)
                if not data:
                    link.finish_upstream()
                    return
                pending += data
            head = pending[: end + 4]
            length = _request_length(head)
            total = None if length is None else len(head) + length
            fault = self._draw()
            if fault is not None and fault.kind == "status":
                if b"100-continue" not in head.lower() and length:
                    _drain(link.client, length - (len(pending) - len(head)))
                link.client.sendall(_status_answer(fault.status))
                self._count("status")
                link.close()
                return
            pending = self._forward_unit(link, pending, total, fault)
            if total is None or link.closed.is_set():
                return

    def _forward_unit(
        self, link: _Link, pending: bytes, total: int | None, fault: _Fault | None
    ) -> bytes:
        """Forward one unit (``total`` bytes, or until the client stops), firing ``fault``.

        Returns the bytes already read that belong to the next unit.
        """
        cut = fault is not None and fault.kind == "cut"
        point = None if fault is None or cut else self._fault_point(fault, total)
        if cut and fault is not None:
            # Armed before the request goes on: the server may answer before the last of it
            # is forwarded, and an answer that passed unarmed would not be cut.
            link.arm_cut(self._fault_point(fault, None))
        sent = 0
        while total is None or sent < total:
            if not pending:
                pending = link.client.recv(_RECV)
                if not pending:
                    link.finish_upstream()
                    if point is not None:
                        self._count("missed")
                    return b""
            piece = pending if total is None else pending[: total - sent]
            pending = pending[len(piece) :]
            if point is not None and fault is not None and sent + len(piece) >= point:
                if fault.kind in ("drop", "reset"):
                    # At the request's end the server may answer before close() below runs;
                    # the client must see no answer, so answers stop before the last bytes go.
                    link.mute()
                link.upstream.sendall(piece[: point - sent])
                piece, sent, point = piece[point - sent :], point, None
                if not self._fire(link, fault):
                    return b""
            link.upstream.sendall(piece)
            sent += len(piece)
        if point is not None and fault is not None:
            if fault.kind in ("drop", "reset"):
                link.mute()
            if not self._fire(link, fault):
                return b""  # an empty unit: the point was its end
        return pending

    def _fire(self, link: _Link, fault: _Fault) -> bool:
        """Inject ``fault`` now; False when the connection is gone."""
        self._count(fault.kind)
        if fault.kind == "stall":
            link.stall(fault.stall)
            return not link.closed.is_set()
        link.close(reset=fault.kind == "reset")
        return False

    def _pump_answers(self, link: _Link) -> None:
        try:
            while data := link.upstream.recv(_RECV):
                link.wait_out_stall()
                if not link.send_answer(data):
                    return
        except OSError:
            pass
        finally:
            link.close()
            with self._lock:
                self._links.discard(link)

    # -- drawing faults --------------------------------------------------------------------

    def _draw(self) -> _Fault | None:
        with self._lock:
            self._counts["units"] += 1
            self._units_in_plan += 1
            plan = self._plan
            if not plan.kinds or (plan.limit is not None and self._planned >= plan.limit):
                return None
            if plan.every is not None:
                hit = self._units_in_plan % plan.every == 0
            else:
                hit = self._rng.random() < (plan.probability or 0.0)
            if not hit:
                return None
            self._planned += 1
            kind = self._rng.choice(plan.kinds)
            return _Fault(kind, plan.after_bytes, self._rng.choice(plan.statuses), plan.stall)

    def _fault_point(self, fault: _Fault, total: int | None) -> int:
        with self._lock:
            if fault.at is not None:
                point = fault.at
            elif fault.kind == "cut":
                point = self._rng.randrange(512)
            else:
                point = self._rng.randrange(total if total else 64 * 1024)
        return point if total is None else min(point, total)

    def _count(self, what: str) -> None:
        with self._lock:
            self._counts[what] += 1


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's socket, the server's, and their shared state."""

    client: socket.socket
    upstream: socket.socket
    count: Callable[[str], None]  # the proxy's counters
    closed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stall_until: float = 0.0
    _answered: int = 0
    _cut_at: int | None = None  # answer byte at which to close (a planned "cut")
    _muted: bool = False  # a drop or reset is firing: no more answer bytes reach the client

    def close(self, *, reset: bool = False) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            missed, self._cut_at = self._cut_at is not None, None
        if missed:
            self.count("missed")
        if reset:  # SO_LINGER 0: close() sends RST instead of FIN
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for sock in (self.upstream, self.client):
            if not (reset and sock is self.client):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv
            sock.close()

    def finish_upstream(self) -> None:
        """The client sent all it will: pass the half-close on, keep the answer flowing."""
        with suppress(OSError):
            self.upstream.shutdown(socket.SHUT_WR)

    def stall(self, seconds: float) -> None:
        with self._lock:
            self._stall_until = time.monotonic() + seconds
        self.closed.wait(seconds)

    def wait_out_stall(self) -> None:
        with self._lock:
            left = self._stall_until - time.monotonic()
        if left > 0:
            self.closed.wait(left)

    def arm_cut(self, after: int) -> None:
        with self._lock:
            missed, self._cut_at = self._cut_at is not None, self._answered + after
        if missed:  # the previous answer was shorter than its cut point
            self.count("missed")

    def mute(self) -> None:
        with self._lock:
            self._muted = True

    def send_answer(self, data: bytes) -> bool:
        """Pass answer bytes to the client, cutting where armed; False once closed."""
        with self._lock:
            if self._muted:
                return False
            cut, self._cut_at = self._cut_at, None
        if cut is not None and self._answered + len(data) >= cut:
            self.client.sendall(data[: cut - self._answered])
            self.count("cut")
            self.close()
            return False
        with self._lock:
            self._cut_at = cut
        self.client.sendall(data)
        with self._lock:
            self._answered += len(data)
        return not self.closed.is_set()


def _request_length(head: bytes) -> int | None:
    """The body length of an HTTP/1.1 request head: Content-Length, 0, or None (chunked)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None
        if name == b"content-length":
            if not value.strip().isdigit():
                return None  # not a length we can follow: the rest is one unit
            length = int(value.strip())
    return length


def _drain(sock: socket.socket, left: int) -> None:
    while left > 0 and (data := sock.recv(min(left, _RECV))):
        left -= len(data)


def _status_answer(status: int) -> bytes:
    body = f"fault injected by FaultProxy: {status}\n".encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
