"""Watcher benchmark: settle-to-library latency, idle CPU on a big tree, reconcile cost.

- latency: files written one at a time into a watched folder; the time from the file having
  settled (written + ``settle_seconds``) to its asset being in the catalog, median of N;
- idle CPU: a watcher (events, then polling) on a tree of ``--tree`` empty files, CPU seconds
  of this process per minute of watching (``resource.getrusage``), nothing changing;
- reconcile: after a first import of the tree, the watched source's reconcile (its rescan
  under the settle rule) against today's unchanged rescan of the same tree as a folder
  (`picpipe import --json`, in a subprocess).

    .venv/bin/python bench/watch_bench.py [--files 50] [--tree 100000] [--idle 60]
        [--out DIR] [--json] [--skip latency,idle,reconcile]

Run the big parts once: they take minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import load_settings
from picpipe.jobs.watch import run_watched
from picpipe.samples import make_jpeg
from picpipe.sources.watched import WatchedOptions, WatchedSource

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
SETTLE = 0.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bench_latency(out: Path, files: int) -> dict[str, Any]:
    inbox, home = out / "latency-inbox", out / "latency-home"
    inbox.mkdir(parents=True)
    settings = load_settings(home=home, library=out / "latency-library")
    options = {"kind": "watched", "path": str(inbox), "settle_seconds": SETTLE}
    catalog = open_catalog(settings.catalog_url)
    stop = threading.Event()
    watcher = threading.Thread(target=run_watched, args=(settings, "inbox", options, stop))
    watcher.start()
    time.sleep(2)
    latencies: list[float] = []
    try:
        for i in range(files):
            staged = out / f"staged-{i}.jpg"
            make_jpeg(staged, size=(320, 240), taken=datetime(2024, 1, 1) + timedelta(hours=i))
            written = time.monotonic()
            os.rename(staged, inbox / f"IMG_{i:04d}.JPG")
            while True:
                with catalog.session() as db:
                    count = db.scalar(select(func.count()).select_from(Asset)) or 0
                if count > i:
                    break
                time.sleep(0.02)
            latencies.append(time.monotonic() - written - SETTLE)
    finally:
        stop.set()
        watcher.join()
        catalog.close()
    return {
        "files": files,
        "settle_seconds": SETTLE,
        "median_s": round(statistics.median(latencies), 3),
        "p90_s": round(sorted(latencies)[int(len(latencies) * 0.9) - 1], 3),
        "max_s": round(max(latencies), 3),
    }


def ensure_tree(out: Path, count: int) -> Path:
    """``count`` empty files in folders of 1000 (``.dat``: recognised as not media once)."""
    tree = out / f"tree-{count}"
    marker = tree / ".complete"
    if marker.exists():
        return tree
    for i in range(count):
        folder = tree / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.dat").touch()
    marker.touch()
    return tree


def bench_idle(tree: Path, seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode in ("events", "poll"):
        options = WatchedOptions(path=tree, poll=mode, poll_seconds=2.0, settle_seconds=SETTLE)
        source = WatchedSource("tree", tree, options=options)
        stop = threading.Event()
        consumer = threading.Thread(target=lambda s=source, e=stop: [None for _ in s.changes(e)])
        consumer.start()
        time.sleep(10)  # watches set up / first poll done
        before, began = _cpu(), time.monotonic()
        time.sleep(seconds)
        used, took = _cpu() - before, time.monotonic() - began
        stop.set()
        consumer.join()
        result[mode] = {
            "cpu_s_per_min": round(used * 60 / took, 2),
            "events_seen": source.state.events,
        }
        log(f"idle {mode}: {result[mode]}")
    return result


def bench_reconcile(out: Path, tree: Path) -> dict[str, Any]:
    home = out / "reconcile-home"
    env = {
        **os.environ,
        "PICPIPE_HOME": str(home),
        "PICPIPE_LIBRARY": str(out / "reconcile-library"),
        "PICPIPE_IMPORT__FSYNC": "false",
        "PICPIPE_SOURCES": json.dumps(
            {"tree": {"kind": "watched", "path": str(tree), "settle_seconds": SETTLE}}
        ),
    }

    def timed(*args: str) -> float:
        began = time.monotonic()
        done = subprocess.run(
            [PICPIPE, *args, "--json", "--no-thumbs"], env=env, check=False, capture_output=True
        )
        if done.returncode not in (0, 3):
            log(f"{args}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
        return time.monotonic() - began

    first = timed("import", "tree")  # the first import (a restart's catalog)
    reconcile = min(timed("import", "tree") for _ in range(2))  # the watcher's reconcile
    timed("import", str(tree))  # the same tree as a plain folder: its first pass
    folder = min(timed("import", str(tree)) for _ in range(2))  # today's unchanged rescan
    return {
        "first_import_s": round(first, 2),
        "watched_reconcile_s": round(reconcile, 2),
        "folder_unchanged_rescan_s": round(folder, 2),
        "ratio": round(reconcile / folder, 2) if folder else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--tree", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="picpipe-watch-bench-"))
    skip = set(args.skip.split(","))
    report: dict[str, Any] = {"out": str(out)}
    if "latency" not in skip:
        report["latency"] = bench_latency(out, args.files)
        log(f"latency: {report['latency']}")
    if not {"idle", "reconcile"} <= skip:
        tree = ensure_tree(out, args.tree)
        if "idle" not in skip:
            report["idle"] = bench_idle(tree, args.idle)
        if "reconcile" not in skip:
            report["reconcile"] = bench_reconcile(out, tree)
            log(f"reconcile: {report['reconcile']}")
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
