"""The photos-sync flow end to end, in subprocesses configured by environment variables only:
`picpipe import kitchen` from a (fake) Synology album, then `picpipe serve` answers `/files`
with the album's photos, each once before any repeats for one client, `/files/list` and
`/files/<cache_key>.jpg` by photos-sync's names, `/cache/stats` with its fields."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.destinations.contract import photo
from tests.fakes.synology import FakeSynology, serve_in_thread

PHOTOS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return
        except httpx.TransportError:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)


@pytest.mark.slow
def test_photos_sync_flow_from_environment_variables(tmp_path: Path) -> None:
    fake = FakeSynology(account="frame", password="kitchen-pass")
    album = fake.add_album("kitchen-dash")
    items = [
        fake.add_item(album, f"IMG_{n:04}.JPG", photo(n, 30_000), 1_700_000_000 + n * 3600)
        for n in range(PHOTOS)
    ]
    fake.add_item(fake.add_album("other"), "elsewhere.jpg", photo(99, 30_000))
    port = _free_port()
    exe = Path(sys.executable).with_name("picpipe")
    with serve_in_thread(fake) as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PICPIPE_", "PHOTOS_"))}
        env |= {
            "PICPIPE_HOME": str(tmp_path / "home"),
            "PICPIPE_LIBRARY": str(tmp_path / "library"),
            "PICPIPE_SOURCES__KITCHEN__KIND": "synology",
            "PICPIPE_SOURCES__KITCHEN__URL": url,
            "PICPIPE_SOURCES__KITCHEN__USERNAME": "frame",
            "PICPIPE_SOURCES__KITCHEN__PASSWORD_ENV": "PHOTOS_PASSWORD",
            "PICPIPE_SOURCES__KITCHEN__ALBUMS": "kitchen-dash",
            "PICPIPE_SOURCES__KITCHEN__POLL_SECONDS": "60",
            "PICPIPE_CACHE__MAX_SIZE_GB": "0.25",
            "PICPIPE_SERVE__COMPAT": "photos-sync",
            "PICPIPE_SERVE__PORT": str(port),
            "PHOTOS_PASSWORD": "kitchen-pass",
        }
        imported = subprocess.run(
            [str(exe), "import", "kitchen", "--json"], env=env, capture_output=True, timeout=300
        )
        assert imported.returncode == 0, imported.stderr.decode()
        assert b"kitchen-pass" not in imported.stdout + imported.stderr
    server = subprocess.Popen(
        [str(exe), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_for(port, server)
        base = f"http://127.0.0.1:{port}"
        shown = []
        for _ in range(PHOTOS):
            answer = httpx.get(f"{base}/files", params={"client": "kitchen"}, timeout=30)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "image/jpeg"
            shown.append(answer.headers["x-picpipe-key"])
        assert len(set(shown)) == PHOTOS  # every photo once before any repeats
        names = httpx.get(f"{base}/files/list", timeout=10).json()
        assert sorted(names) == sorted(f"{item.cache_key}.jpg" for item in items)
        one = httpx.get(f"{base}/files/{items[0].cache_key}.jpg", timeout=30)
        assert one.status_code == 200
        assert one.content.startswith(b"\xff\xd8")
        assert httpx.get(f"{base}/files/1_2.jpg", timeout=10).status_code == 404
        stats = httpx.get(f"{base}/cache/stats", timeout=10).json()
        assert stats["indexed"] == PHOTOS
        assert stats["max_bytes"] == 250_000_000
        assert {"cached", "size_bytes"} <= set(stats)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
