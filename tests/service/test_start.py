"""`picpipe start` as a real subprocess: watch, ingest, replicate, verify; stop; resume."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from picpipe.samples import make_jpeg
from tests.conftest import run_cli
from tests.service.helpers import (
    free_port,
    service_env,
    start_service,
    status,
    stop_service,
    verified,
    wait_for,
    watched_config,
)

pytestmark = pytest.mark.usefixtures("exiftool_available")
BATCH = 240


@pytest.mark.slow
def test_a_dropped_file_is_ingested_replicated_and_verified_and_sigterm_stops_quickly(
    tmp_path: Path,
) -> None:
    inbox, backup = tmp_path / "inbox", tmp_path / "backup"
    inbox.mkdir()
    backup.mkdir()
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(0.2)
    port = free_port()
    env = service_env(
        tmp_path,
        watched_config(inbox, backup),
        NOTIFY_SOCKET=str(notify),
        WATCHDOG_USEC="1000000",
    )
    proc = start_service(env, "--port", str(port))
    messages: list[str] = []
    done = threading.Event()

    def read() -> None:  # as systemd does: every datagram, as it comes
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                messages.append(listener.recv(4096).decode())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def received(text: str) -> bool:
        return any(text in m.split("\n") for m in list(messages))

    try:
        wait_for("READY=1", lambda: received("READY=1"), proc, timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        wait_for("WATCHDOG=1", lambda: received("WATCHDOG=1"), proc, timeout=5)
        shown = status(env)["service"]
        assert shown["kind"] == "service"
        assert shown["progress"]["state"] in {"idle", "scanning", "completed", "backing_up"}

        make_jpeg(inbox / "a.jpg", taken=datetime(2024, 1, 2, 3, 4, 5), seed=1)
        settled = time.monotonic()
        wait_for("replica verified", lambda: verified(env) == 1, proc, timeout=40)
        delay = time.monotonic() - settled
        replicas = [p for p in backup.rglob("*.jpg")]
        assert len(replicas) == 1
        wait_for(
            "completed", lambda: status(env)["service"]["progress"]["state"] == "completed", proc
        )

        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        stopped_in = time.monotonic() - began
    finally:
        if proc.poll() is None:
            stop_service(proc)
        done.set()
        reader.join(timeout=2)
        listener.close()
    assert proc.returncode == 0, err
    assert stopped_in < 8, f"stopped in {stopped_in:.1f}s"
    assert received("STOPPING=1")
    assert delay < 30, f"settled to verified: {delay:.1f}s"
    print(f"settled → replica verified: {delay:.2f}s; SIGTERM → exit: {stopped_in:.2f}s")
    assert status(env)["service"] is None  # the service run ended with the process


@pytest.mark.slow
def test_sigterm_mid_batch_ends_between_files_and_the_next_pass_resumes(tmp_path: Path) -> None:
    inbox, backup = tmp_path / "inbox", tmp_path / "backup"
    inbox.mkdir()
    backup.mkdir()
    # Enough photos that the import is still at work when the test's status poll sees it.
    for i in range(BATCH):
        make_jpeg(inbox / f"p{i:03}.jpg", taken=datetime(2024, 2, 1, 0, i // 60, i % 60), seed=i)
    env = service_env(tmp_path, watched_config(inbox, backup, sync="every 1h"))
    proc = start_service(env, "--no-web")
    try:

        def importing() -> bool:
            runs = status(env).get("runs", [])
            return any(
                r["kind"] == "import" and (r["progress"] or {}).get("done", 0) > 0 for r in runs
            )

        wait_for("an import under way", importing, proc, timeout=40, pause=0.1)
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - began
    finally:
        if proc.poll() is None:
            stop_service(proc)
    assert proc.returncode == 0, err
    assert stopped_in < 6, f"stopped in {stopped_in:.1f}s"
    print(f"SIGTERM mid-batch → exit: {stopped_in:.2f}s")
    partial = status(env)["assets"]
    assert 0 < partial < BATCH, "the import ran to its end instead of stopping between files"

    once = run_cli("start", "--once", "--json", env=env, timeout=300)
    assert once.returncode == 0, once.stderr
    result = json.loads(once.stdout)
    assert result["ingest"]["new"] == BATCH - partial
    assert status(env)["assets"] == BATCH
    assert verified(env) == BATCH
    assert result["sync"]["destinations"]["nas"]["uploaded"] == BATCH


@pytest.mark.slow
def test_a_failing_destination_retries_with_backoff_while_the_watcher_goes_on(
    tmp_path: Path,
) -> None:
    inbox, backup = tmp_path / "inbox", tmp_path / "nas-share"  # not mounted yet
    inbox.mkdir()
    env = service_env(tmp_path, watched_config(inbox, backup, sync="every 1h"))
    proc = start_service(env, "--no-web")
    try:
        make_jpeg(inbox / "a.jpg", taken=datetime(2024, 3, 1, 1, 0, 0), seed=5)
        wait_for("first file ingested", lambda: status(env).get("assets") == 1, proc)

        def failing() -> bool:
            nas = status(env)["service"]["progress"]["destinations"]["nas"]
            return nas["ok"] is False and bool(nas["error"])

        wait_for("destination error shown", failing, proc)
        progress = status(env)["service"]["progress"]
        assert "nas" in progress["retrying"]
        second = run_cli("start", "--no-web", env=env, timeout=60)
        assert second.returncode == 10, second.stderr  # one service per catalog
        assert "service run" in second.stderr
        make_jpeg(inbox / "b.jpg", taken=datetime(2024, 3, 1, 2, 0, 0), seed=6)
        wait_for("the watcher goes on", lambda: status(env).get("assets") == 2, proc)
        backup.mkdir()  # the share is back: the next retry (well before the hour) syncs
        wait_for("retried and verified", lambda: verified(env) == 2, proc, timeout=60)
        # The service's status is stored with its next heartbeat, a moment after the sync.
        wait_for(
            "the destination shown as fine again",
            lambda: (
                status(env)["service"]["progress"]["destinations"]["nas"]
                == {"ok": True, "error": None}
            ),
            proc,
            timeout=30,
        )
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            stop_service(proc)
    assert proc.returncode == 0, err


def test_start_once_with_an_unreachable_destination_exits_like_sync(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_jpeg(inbox / "a.jpg", taken=datetime(2024, 4, 1, 1, 0, 0), seed=7)
    config = watched_config(inbox, tmp_path / "missing")
    config["sources"]["inbox"]["settle_seconds"] = 0
    env = service_env(tmp_path, config)
    done = run_cli("start", "--once", "--json", env=env, timeout=120)
    assert done.returncode == 11, done.stderr
    result = json.loads(done.stdout)
    assert result["ingest"]["new"] == 1
    assert result["sync"]["destinations"]["nas"]["unreachable"]
