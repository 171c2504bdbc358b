"""Service benchmark: idle CPU and RSS of `picpipe start`, and settle → replica verified.

- idle: three watched folders of ``--tree`` files each (empty ``.dat`` files in folders of
  1000: listed, accounted for as skipped, never read), a filesystem destination, the web
  server on, MQTT off (``--mqtt HOST:PORT``: measured again with it on). After the start-up
  reconcile of all three has finished, CPU seconds per minute (utime + stime of the process
  and its children, from /proc) and RSS (the process tree's VmRSS) over ``--idle`` seconds.
  The baseline is `picpipe watch` on the same folders (the live sources alone, as before the
  service existed).
- delay: JPEGs written one at a time into a watched folder of the running service; the time
  from the file having settled (written + ``settle_seconds``) to its replica at the
  destination being verified (the replica row's state, read from the catalog), median and max.

    .venv/bin/python bench/service_bench.py [--tree 10000] [--idle 60] [--files 10] [--json]

Figures, not pass/fail; run it alone (it takes a few minutes on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Replica
from picpipe.samples import make_jpeg

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
SETTLE = 0.5
TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_tree(root: Path, count: int) -> Path:
    """``count`` empty files in folders of 1000 (``.dat``: recognised as not media once)."""
    marker = root / ".complete"
    if marker.exists():
        return root
    for i in range(count):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.dat").touch()
    marker.touch()
    return root


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (exiftool, thumbnail workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live children, and of the children it reaped."""
    total = 0
    for one in _tree_pids(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if one == pid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / TICKS


def _rss_mb(pid: int) -> float:
    kb = 0
    for one in _tree_pids(pid):
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
        except OSError:
            continue
    return kb / 1024


def _env(home: Path, library: Path, config: dict[str, Any]) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return {
        **os.environ,
        "PICPIPE_HOME": str(home),
        "PICPIPE_LIBRARY": str(library),
        "PICPIPE_IMPORT__FSYNC": "false",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _watch_runs_done(env: dict[str, str], names: list[str]) -> bool:
    """Every watcher finished its start-up reconcile (its status counts one ingest)."""
    out = subprocess.run(
        [PICPIPE, "status", "--json"], env=env, capture_output=True, text=True, check=False
    ).stdout
    if not out.strip():
        return False
    runs = [r for r in json.loads(out).get("runs", []) if r["kind"] == "watch"]
    done = {r["device"]: (r["progress"] or {}).get("done", 0) for r in runs}
    return all(done.get(name, 0) >= 1 for name in names)


def measure_idle(
    command: list[str], env: dict[str, str], names: list[str], seconds: float
) -> dict[str, Any]:
    errors = open(Path(env["PICPIPE_HOME"]) / "stderr.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=errors, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        began = time.monotonic()
        while not _watch_runs_done(env, names):
            if proc.poll() is not None or time.monotonic() - began > 900:
                raise RuntimeError(f"{command[1]} did not settle; see {errors.name}")
            time.sleep(2)
        startup = time.monotonic() - began
        time.sleep(5)  # the last writes of the start-up pass
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        samples = []
        while time.monotonic() - t0 < seconds:
            time.sleep(5)
            samples.append(_rss_mb(proc.pid))
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        errors.close()
    return {
        "startup_reconcile_s": round(startup, 1),
        "cpu_s_per_min": round((cpu1 - cpu0) * 60 / (t1 - t0), 3),
        "rss_mb_max": round(max(samples), 1),
        "rss_mb_median": round(statistics.median(samples), 1),
    }


def bench_idle(
    out: Path, tree: int, seconds: float, mqtt: dict[str, Any] | None = None
) -> dict[str, Any]:
    names = ["one", "two", "three"]
    sources = {
        n: {
            "kind": "watched",
            "path": str(ensure_tree(out / f"tree-{n}", tree)),
            "settle_seconds": SETTLE,
        }
        for n in names
    }
    backup = out / "idle-backup"
    backup.mkdir(exist_ok=True)
    result: dict[str, Any] = {}
    runs: list[tuple[str, list[str], dict[str, Any] | None]] = [
        ("watch (baseline)", [PICPIPE, "watch"], None),
        ("start", [PICPIPE, "start", "--port", str(_free_port())], None),
    ]
    if mqtt is not None:  # the service as Home Assistant users run it
        runs.append(("start+mqtt", [PICPIPE, "start", "--port", str(_free_port())], mqtt))
    for label, command, broker in runs:
        config: dict[str, Any] = {
            "sources": sources,
            "destinations": {"nas": {"kind": "filesystem", "path": str(backup), "fsync": False}},
            "schedule": {"sync": "every 15m", "reconcile": "every 6h"},
        }
        if broker is not None:
            config["mqtt"] = broker
        home = label.split()[0].replace("+", "-")
        env = _env(out / f"idle-home-{home}", out / f"idle-library-{home}", config)
        result[label] = measure_idle(command, env, names, seconds)
        log(f"idle {label}: {result[label]}")
    return result


def bench_delay(out: Path, files: int) -> dict[str, Any]:
    inbox, backup = out / "delay-inbox", out / "delay-backup"
    inbox.mkdir(parents=True, exist_ok=True)
    backup.mkdir(parents=True, exist_ok=True)
    env = _env(
        out / "delay-home",
        out / "delay-library",
        {
            "sources": {"inbox": {"kind": "watched", "path": str(inbox), "settle_seconds": SETTLE}},
            "destinations": {"nas": {"kind": "filesystem", "path": str(backup), "fsync": False}},
            "schedule": {"sync": "every 1h", "reconcile": None},
        },
    )
    proc = subprocess.Popen(
        [PICPIPE, "start", "--no-web"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    delays: list[float] = []
    try:
        time.sleep(6)  # started, first (empty) reconcile and sync done
        catalog = open_catalog(f"sqlite:///{out / 'delay-home' / 'catalog.db'}")
        base = datetime(2024, 5, 1, 12, 0, 0)
        for i in range(files):
            make_jpeg(inbox / f"d{i:03}.jpg", taken=base + timedelta(minutes=i), seed=100 + i)
            settled = time.monotonic() + SETTLE
            deadline = settled + 120
            while time.monotonic() < deadline:
                with catalog.session() as db:
                    count = len(
                        db.scalars(select(Replica.sha256).where(Replica.state == "verified")).all()
                    )
                if count > i:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(
                    f"file {i} not verified: {proc.stderr.read() if proc.stderr else ''}"
                )
            delays.append(time.monotonic() - settled)
            log(f"file {i}: settled → verified {delays[-1]:.2f}s")
            time.sleep(1.0)
        catalog.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return {
        "files": files,
        "settle_seconds": SETTLE,
        "median_s": round(statistics.median(delays), 2),
        "max_s": round(max(delays), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip", default="")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--mqtt", default=None, help="HOST:PORT of a broker: also measure the service with MQTT on"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="picpipe-service-bench-"))
    skip = set(args.skip.split(","))
    result: dict[str, Any] = {"tree_per_folder": args.tree, "idle_seconds": args.idle}
    if "delay" not in skip:
        result["delay"] = bench_delay(out, args.files)
    if "idle" not in skip:
        broker = None
        if args.mqtt:
            host, _, port = args.mqtt.rpartition(":")
            tag = f"bench{os.getpid()}"
            broker = {"host": host, "port": int(port), "discovery_prefix": f"ha_{tag}"}
            broker["topic_prefix"] = f"pp_{tag}"
        result["idle"] = bench_idle(out, args.tree, args.idle, broker)
    print(json.dumps(result, indent=2) if args.json else result)


if __name__ == "__main__":
    main()
