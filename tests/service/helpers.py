"""Running `picpipe start` as a real subprocess: its config, its status, its replicas."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import run_cli

PICPIPE = Path(os.sys.executable).with_name("picpipe")


def service_env(tmp_path: Path, config: dict[str, Any], **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return {
        **os.environ,
        "PICPIPE_HOME": str(home),
        "PICPIPE_LIBRARY": str(tmp_path / "library"),
        "PICPIPE_IMPORT__FSYNC": "false",
        "PICPIPE_RUNS__LEASE_SECONDS": "6",
        **extra,
    }


def watched_config(inbox: Path, backup: Path, *, sync: str = "every 2s") -> dict[str, Any]:
    return {
        "sources": {"inbox": {"kind": "watched", "path": str(inbox), "settle_seconds": 0.5}},
        "destinations": {"nas": {"kind": "filesystem", "path": str(backup), "fsync": False}},
        "schedule": {"sync": sync, "reconcile": None},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_service(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PICPIPE), "start", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its exiftool and thumbnail workers can be killed with it
    )


def stop_service(proc: subprocess.Popen[str], timeout: float = 20) -> tuple[str, str]:
    """Kill what is left of the service (its workers too) and collect its output."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate(timeout=timeout)


def status(env: dict[str, str]) -> dict[str, Any]:
    out = run_cli("status", "--json", env=env).stdout
    return json.loads(out) if out.strip() else {}


def verified(env: dict[str, str], destination: str = "nas") -> int:
    out = run_cli("replicas", "--json", env=env).stdout
    if not out.strip():
        return 0
    return int(json.loads(out)["destinations"].get(destination, {}).get("verified", 0))


def wait_for(
    what: str,
    check: Callable[[], bool],
    proc: subprocess.Popen[str],
    timeout: float = 40,
    pause: float = 0.3,
) -> float:
    """Seconds until ``check`` held; fails with the service's stderr when it never does."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        if proc.poll() is not None:
            break
        time.sleep(pause)
    _out, err = stop_service(proc)
    raise AssertionError(f"{what}: not within {timeout}s; service stderr:\n{err[-4000:]}")
