"""The whole service as Home Assistant sees it: `picpipe start` as a real subprocess with a
watched folder, a filesystem destination and MQTT on the local Mosquitto. A dropped photo is
ingested, replicated and verified, and the sensors move through the states to `completed`
with the right counts; SIGTERM stops it cleanly and says "offline"; a restart resumes."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from picpipe.samples import make_jpeg
from tests.service.conftest import Recorder, record
from tests.service.helpers import (
    free_port,
    service_env,
    start_service,
    stop_service,
    verified,
    wait_for,
    watched_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("exiftool_available")]


def test_a_photo_dropped_in_is_done_in_home_assistant_and_a_restart_resumes(
    tmp_path: Path, broker: tuple[str, int], prefixes: tuple[str, str]
) -> None:
    dp, tp = prefixes
    inbox, backup = tmp_path / "inbox", tmp_path / "backup"
    inbox.mkdir()
    backup.mkdir()
    config = watched_config(inbox, backup)
    config["mqtt"] = {
        "host": broker[0],
        "port": broker[1],
        "discovery_prefix": dp,
        "topic_prefix": tp,
    }
    env = service_env(tmp_path, config)
    rec = record(*broker, f"{tp}/#", f"{dp}/#")
    proc = start_service(env, "--port", str(free_port()))
    try:
        wait_for("online", lambda: rec.latest(f"{tp}/availability") == b"online", proc)
        wait_for("discovery", lambda: _discovered(rec, dp), proc)
        for i in range(2):
            make_jpeg(inbox / f"IMG_{i}.jpg", taken=datetime(2024, 5, 1, 9, i), seed=i + 1)
        settled = time.monotonic()
        wait_for("two replicas verified", lambda: verified(env) == 2, proc, timeout=60)
        wait_for(
            "library totals",
            lambda: json.loads(rec.latest(f"{tp}/library") or b"{}").get("assets") == 2,
            proc,
        )
        wait_for(
            "destination verified",
            lambda: json.loads(rec.latest(f"{tp}/destination/nas") or b"{}").get("verified") == 2,
            proc,
        )
        wait_for("completed", lambda: rec.latest(f"{tp}/status") == b"completed", proc)
        shown_in = time.monotonic() - settled
        words = [m.payload for m in rec.of(f"{tp}/status")]
        # The publisher sends the latest state (a run that begins and ends between two sends
        # may not show its word); the working words come before the last `completed`.
        assert {b"scanning", b"importing"} & set(words[:-1]), words
        assert all(w.decode() in _WORDS for w in words), words  # plain words, not JSON
        # The scheduled syncs that follow (every 2 s here) find nothing to do: the figures
        # of the last run that did something stay on the sensors.
        time.sleep(4)
        files = json.loads(rec.latest(f"{tp}/files") or b"{}")
        assert files["done"] == files["total"] > 0, files
        last = json.loads(rec.latest(f"{tp}/last_session") or b"{}")
        assert last["kind"] in ("import", "sync"), last
        assert last["new"] + last["bytes"] > 0, last
        assert rec.latest(f"{tp}/status") == b"completed"

        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert time.monotonic() - began < 10
        rec.wait_for(lambda: rec.latest(f"{tp}/availability") == b"offline")

        # Files dropped while it was down are picked up at the next start.
        make_jpeg(inbox / "IMG_late.jpg", taken=datetime(2024, 5, 2, 9, 0), seed=9)
        proc = start_service(env, "--port", str(free_port()))
        wait_for("the late photo verified", lambda: verified(env) == 3, proc, timeout=60)
        wait_for(
            "three assets",
            lambda: json.loads(rec.latest(f"{tp}/library") or b"{}").get("assets") == 3,
            proc,
        )
    finally:
        stop_service(proc)
        rec.stop()
    print(f"settled -> sensors show it done: {shown_in:.2f} s")


_WORDS = {"idle", "scanning", "importing", "backing_up", "completed", "failed"}


def _discovered(rec: Recorder, dp: str) -> bool:
    """picpipe's status sensor was announced (single-component form)."""
    return any(
        m.topic.startswith(f"{dp}/sensor/") and m.topic.endswith("/status/config")
        for m in list(rec.messages)
    )
