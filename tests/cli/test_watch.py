"""`picpipe watch`: runs the live sources until SIGTERM, then ends cleanly within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from picpipe.samples import make_jpeg
from tests.conftest import run_cli


def _config(tmp_path: Path, sources: dict[str, object]) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump({"sources": sources}), encoding="utf-8")
    return {
        **os.environ,
        "PICPIPE_HOME": str(home),
        "PICPIPE_LIBRARY": str(tmp_path / "library"),
        "PICPIPE_IMPORT__FSYNC": "false",
    }


def _imported(env: dict[str, str]) -> int:
    out = run_cli("status", "--json", env=env).stdout
    return int(json.loads(out)["assets"]) if out.strip() else 0


@pytest.mark.slow
def test_watch_ingests_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    inbox, camera = tmp_path / "inbox", tmp_path / "icloud"
    inbox.mkdir()
    camera.mkdir()
    env = _config(
        tmp_path,
        {
            "inbox": {"kind": "watched", "path": str(inbox), "settle_seconds": 0.5, "poll": "auto"},
            "icloud": {"kind": "icloudpd", "path": str(camera), "settle_seconds": 0.5},
        },
    )
    exe = Path(os.sys.executable).with_name("picpipe")
    proc = subprocess.Popen(
        [str(exe), "watch", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        make_jpeg(inbox / "a.jpg", taken=datetime(2024, 1, 2, 3, 4, 5), seed=1)
        make_jpeg(camera / "IMG_0001.JPG", taken=datetime(2024, 1, 2, 3, 4, 6), seed=2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _imported(env) < 2:
            time.sleep(0.5)
        if _imported(env) < 2:
            proc.kill()
            pytest.fail(f"not imported; stderr: {proc.communicate()[1][-3000:]}")
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
        assert time.monotonic() - began < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["sources"] == {
        "inbox": {"ok": True, "error": None},
        "icloud": {"ok": True, "error": None},
    }
    sessions = json.loads(run_cli("sessions", "--json", env=env).stdout)
    assert not [s for s in _rows(sessions) if s.get("status") == "running"]


def _rows(sessions: object) -> list[dict[str, object]]:
    if isinstance(sessions, dict):
        found = sessions.get("sessions", [])
        return found if isinstance(found, list) else []
    return sessions if isinstance(sessions, list) else []


def test_import_of_a_watched_source_is_one_reconcile(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_jpeg(inbox / "a.jpg", taken=datetime(2024, 1, 2, 3, 4, 5), seed=3)
    env = _config(tmp_path, {"inbox": {"kind": "watched", "path": str(inbox), "settle_seconds": 0}})
    done = run_cli("import", "inbox", "--json", "--no-thumbs", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["new"] == 1


def test_watch_without_live_sources_is_a_config_error(tmp_path: Path) -> None:
    env = _config(tmp_path, {"plain": {"kind": "folder", "path": str(tmp_path)}})
    done = run_cli("watch", env=env)
    assert done.returncode != 0
    assert "no live sources configured" in done.stderr + done.stdout
