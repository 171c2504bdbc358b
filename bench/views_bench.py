"""Views benchmark: a by-date view of N assets from scratch, and after one import of 100 files.

Builds a synthetic library under ``--out`` (N tiny originals spread over three years and their
catalog rows in SQLite; reused by later runs), then prints medians of:

- ``picpipe views`` from scratch (the views folder removed first), beside ``cp -rs`` of the
  same ``originals/`` tree (one symlink per original, no names to work out, no catalog);
- the rebuild after one new import of 100 files (rows and files added for two days), beside
  ``find -type l`` over the view (listing the links, the least a stat-based update reads);
- a rebuild with nothing changed.

Target: the incremental rebuild well under a second at 100,000 assets. From the repo:

    .venv/bin/python bench/views_bench.py [--assets N] [--repeat N] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select

from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import Settings, load_settings
from picpipe.library.layout import original_path
from picpipe.library.views import build_views

START = datetime(2021, 1, 1, 9, 0, 0)
NAMES = ("IMG_{n:04d}.JPG", "IMG_{n:04d}.HEIC", "PXL_2022{n:04d}.jpg", "DSC{n:05d}.NEF")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_assets(settings: Settings, catalog: Catalog, start: int, count: int, days: int) -> None:
    """``count`` assets numbered from ``start``: files and rows, over ``days`` days."""
    root = settings.library_root
    rows: list[dict[str, Any]] = []
    for i in range(start, start + count):
        data = f"asset-{i}".encode()
        sha = hashlib.sha256(data).hexdigest()
        taken = START + timedelta(days=(i * days) // max(count, 1) % days, seconds=i % 86400)
        name = NAMES[i % len(NAMES)].format(n=i % 10000)
        rel = original_path(sha, taken.date(), name.rsplit(".", 1)[1])
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append(
            {
                "sha256": sha, "size": len(data), "kind": "photo", "taken_local": taken,
                "date_source": "exif", "make": "Canon", "model": "Canon EOS R6",
                "original_name": name, "library_path": rel, "thumbs_state": "pending",
                "imported_at": START + timedelta(seconds=i),
            }
        )  # fmt: skip
        if len(rows) == 5000:
            _insert(catalog, rows)
            rows = []
    if rows:
        _insert(catalog, rows)


def trim(settings: Settings, catalog: Catalog, count: int) -> None:
    """Drop the assets numbered ``count`` and up (rows and files)."""
    cut = START + timedelta(seconds=count)
    with catalog.session() as db, db.begin():
        paths = db.scalars(select(Asset.library_path).where(Asset.imported_at >= cut)).all()
        db.execute(delete(Asset).where(Asset.imported_at >= cut))
    for rel in paths:
        (settings.library_root / rel).unlink(missing_ok=True)


def _insert(catalog: Catalog, rows: list[dict[str, Any]]) -> None:
    with catalog.session() as db, db.begin():
        db.execute(insert(Asset), rows)


def median_of(job: Callable[[], None], repeat: int, before: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        job()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "picpipe-views")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: Path = args.out / str(args.assets)
    settings = load_settings(
        home=out / "home", library=out / "library", views={"layouts": ["by-date"]}
    )
    catalog = open_catalog(settings.catalog_url)
    trim(settings, catalog, args.assets)  # what earlier runs' "imports" added
    with catalog.session() as db:
        have = db.scalar(select(func.count()).select_from(Asset)) or 0
    if have < args.assets:
        log(f"making {args.assets - have} assets under {out} (once)")
        add_assets(settings, catalog, have, args.assets - have, days=3 * 365)
    with catalog.session() as db:
        have = db.scalar(select(func.count()).select_from(Asset)) or 0
    views = settings.views_root
    baseline = out / "baseline"

    def clear() -> None:
        shutil.rmtree(views, ignore_errors=True)

    def clear_baseline() -> None:
        shutil.rmtree(baseline, ignore_errors=True)

    log(f"from scratch: picpipe views and cp -rs over {have} assets")
    scratch = median_of(lambda: build_views(settings, catalog), args.repeat, clear)
    cp = median_of(
        lambda: subprocess.run(
            ["cp", "-rs", str(settings.library_root / "originals"), str(baseline)], check=True
        ),
        args.repeat,
        clear_baseline,
    )
    clear_baseline()
    build_views(settings, catalog)
    unchanged = median_of(lambda: build_views(settings, catalog), args.repeat, lambda: None)

    counter = {"next": have}

    def one_import() -> None:  # 100 new files over two days, as one import would add them
        add_assets(settings, catalog, counter["next"], 100, days=2)
        counter["next"] += 100

    log("after one import of 100 files")
    incremental = median_of(lambda: build_views(settings, catalog), args.repeat, one_import)
    last = build_views(settings, catalog).as_dict()
    find = median_of(
        lambda: subprocess.run(
            ["find", str(views / "by-date"), "-type", "l"], check=True, capture_output=True
        ),
        args.repeat,
        lambda: None,
    )
    catalog.close()
    report = {
        "assets": have,
        "repeat": args.repeat,
        "scratch_seconds": round(scratch, 3),
        "scratch_baseline_cp_rs_seconds": round(cp, 3),
        "incremental_100_seconds": round(incremental, 3),
        "incremental_baseline_find_seconds": round(find, 3),
        "unchanged_seconds": round(unchanged, 3),
        "links": last["layouts"]["by-date"]["links"],
        "folders": last["layouts"]["by-date"]["folders"],
        "target_incremental_under_1s": incremental < 1.0,
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"by-date view of {have} assets ({report['folders']} day folders), medians of {args.repeat}"
    )
    print(f"  from scratch          {scratch:8.3f} s   baseline cp -rs originals/   {cp:8.3f} s")
    print(
        f"  after 100 new files   {incremental:8.3f} s   baseline find -type l        {find:8.3f} s"
    )
    print(f"  nothing changed       {unchanged:8.3f} s")
    verdict = "met" if incremental < 1.0 else "MISSED"
    print(f"  target: incremental rebuild under 1 s: {verdict}")


if __name__ == "__main__":
    main()
