"""Import benchmark: throughput, hashing speed, unchanged-rescan cost and peak memory.

Generates a synthetic library under ``--out`` (N realistic 4000x3000 JPEGs with EXIF dates, and a
tree of small unique JPEGs in folders of 1000) and prints each figure beside a baseline measured in
the same run, the ratio, and a verdict per target: hashing >= 0.8x ``openssl dgst -sha256`` (one
core, all cores), unchanged rescan <= 2x ``find -printf``, peak RSS < 300 MB at 100,000 files.
The data and the small tree's one-time import (minutes) are reused by later runs. From the repo:

    .venv/bin/python bench/import_bench.py [--jpegs N] [--small N] [--json]
        [--workers N] [--repeat N] [--out DIR]

Progress goes to stderr; the report (with ``--json``, one JSON object) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from picpipe.catalog.db import open_catalog
from picpipe.config import load_settings
from picpipe.hashing import sha256_file
from picpipe.jobs.workflows import import_sources
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.runner import SessionSummary
from picpipe.pipeline.stages import IMPORT_STAGES, Stage, StageContext
from picpipe.pipeline.task import ImportTask
from picpipe.samples import make_jpeg
from picpipe.sources.folder import FolderSource

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
MB = 1e6
DATA_VERSION = 1  # bump when the generated data changes shape, to invalidate old caches
PER_FOLDER = 1000
RSS_LIMIT_MB = 300.0
FIND = "find -printf '%s %T@ %p\\n'"
CAMERAS = [("Apple", "iPhone 13"), ("samsung", "SM-G991B"), ("Canon", "Canon EOS R6")]
Section = dict[str, Any]  # title, figures, notes, verdicts: printed, or dumped by --json

# A child forked from this process inherits its RSS high-water mark (ru_maxrss would report the
# bench, not picpipe), so a small launcher process spawns the command and reports its rusage.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {time.perf_counter() - start}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


def medians(jobs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each job; rounds interleave the jobs so noise hits all of them."""
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeat):
        for name, job in jobs.items():
            start = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def figure(label: str, value: float, base_label: str, base: float, unit: str) -> dict[str, Any]:
    ratio = value / base
    return dict(label=label, value=value, unit=unit, baseline_label=base_label, baseline=base,
                ratio=ratio)  # fmt: skip


def verdict(target: str, met: bool, detail: str) -> dict[str, Any]:
    return {"target": target, "met": met, "detail": detail}


@dataclass(frozen=True, slots=True)
class ChildRun:
    seconds: float
    rss_mb: float  # largest RSS in the child's process tree (picpipe or an exiftool)
    code: int
    stdout: str
    stderr: str


def run_child(cmd: Sequence[str], progress: Callable[[], str] | None = None) -> ChildRun:
    """Run ``cmd``; its wall time and peak RSS (ru_maxrss, KiB on Linux) come from LAUNCHER."""
    with tempfile.TemporaryDirectory() as tmp:
        stats, out, err = (Path(tmp, name) for name in ("stats", "out", "err"))
        with out.open("wb") as stdout, err.open("wb") as stderr:
            launch = [sys.executable, "-c", LAUNCHER, str(stats), *cmd]
            proc = subprocess.Popen(launch, stdout=stdout, stderr=stderr)
            start = time.perf_counter()
            while True:
                try:
                    code = proc.wait(timeout=15.0 if progress else None)
                    break
                except subprocess.TimeoutExpired:
                    assert progress is not None
                    log(f"  {time.perf_counter() - start:5.0f} s  {progress()}")
        if not stats.exists():
            raise SystemExit(f"could not run {cmd}: {err.read_text()}")
        maxrss, seconds = stats.read_text().split()
        rss = int(maxrss) * 1024 / MB
        return ChildRun(float(seconds), rss, code, out.read_text(), err.read_text())


# -- synthetic data ----------------------------------------------------------------------------


def _taken(i: int) -> datetime:
    return datetime(2023, 1, 1, 8, 0, 0) + timedelta(days=3 * i, minutes=37 * i)


def _make_big(job: tuple[Path, int]) -> None:
    path, i = job
    (make, model), gps = CAMERAS[i % len(CAMERAS)], (40 + i * 0.37 % 20, -5 + i * 1.3 % 30)
    make_jpeg(path, size=(4000, 3000), taken=_taken(i), offset="+02:00", make=make,
              model=model, gps=gps, seed=i, noise=32.0, quality=90)  # fmt: skip


def ensure_jpegs(out: Path, count: int) -> tuple[list[Path], bool]:
    """The big JPEGs (about 6.6 MB and 0.5 s each), made on every core; reused when complete."""
    folder, manifest = out / "jpegs", out / "jpegs.json"
    wanted = {"version": DATA_VERSION, "count": count}
    files = [folder / f"IMG_{_taken(i):%Y%m%d_%H%M%S}_{i:04d}.jpg" for i in range(count)]
    if load_json(manifest) == wanted and all(f.is_file() for f in files):
        return files, True
    manifest.unlink(missing_ok=True)  # written again only once every file is complete
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"generating {count} JPEGs of 4000x3000 in {folder} ...")
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make_big, [(f, i) for i, f in enumerate(files)]))
    manifest.write_text(json.dumps(wanted))
    return files, False


def ensure_tree(out: Path, count: int) -> tuple[Path, str, bool]:
    """``count`` small JPEGs, one day folder per 1000 (so the library gets 1000 per day too)."""
    root, manifest = out / "small", out / "small.json"
    old = load_json(manifest)
    if old.get("version") == DATA_VERSION and old.get("count") == count and root.is_dir():
        return root, str(old["stamp"]), True
    manifest.unlink(missing_ok=True)  # written again only once every file is complete
    shutil.rmtree(root, ignore_errors=True)
    log(f"writing {count} small files under {root} ...")
    template_path = out / "template.jpg"
    for d in range(-(-count // PER_FOLDER)):
        day = datetime(2020, 1, 1, 9, 0, 0) + timedelta(days=d)
        make_jpeg(template_path, size=(64, 48), taken=day, seed=d, quality=85)
        template = template_path.read_bytes()
        folder = root / f"{day:%Y-%m-%d}"
        folder.mkdir(parents=True)
        for i in range(d * PER_FOLDER, min(count, (d + 1) * PER_FOLDER)):
            name = f"IMG_{day + timedelta(seconds=7 * (i % PER_FOLDER)):%Y%m%d_%H%M%S}_{i:06d}.jpg"
            # Bytes after the JPEG end marker: the same picture, but its own sha256.
            (folder / name).write_bytes(template + i.to_bytes(4, "big"))
    template_path.unlink()
    stamp = str(time.time_ns())  # identifies this generation; a cached import must match it
    manifest.write_text(json.dumps({"version": DATA_VERSION, "count": count, "stamp": stamp}))
    return root, stamp, False


# -- measurements ------------------------------------------------------------------------------


def bench_hash(files: list[Path], repeat: int) -> Section:
    """picpipe's sha256_file against openssl on the same warm files, one core then all cores."""
    names = [str(f) for f in files]
    total = sum(f.stat().st_size for f in files)
    cores = os.cpu_count() or 1
    for name in names:
        sha256_file(name)  # into the page cache: this measures hashing, not the disk

    def openssl(procs: int) -> None:
        argv = [["openssl", "dgst", "-sha256", *names[i::procs]] for i in range(procs)]
        running = [subprocess.Popen(a, stdout=subprocess.DEVNULL) for a in argv]
        if any(p.wait() for p in running):
            raise RuntimeError("openssl dgst failed")

    openssl(cores)  # its binary and libraries into the cache too
    with ThreadPoolExecutor(cores) as pool:
        jobs: dict[str, Callable[[], object]] = {
            "picpipe_1": lambda: [sha256_file(n) for n in names],
            "openssl_1": lambda: openssl(1),
            "picpipe_n": lambda: list(pool.map(sha256_file, names)),
            "openssl_n": lambda: openssl(cores),
        }
        rate = {k: total / v / MB for k, v in medians(jobs, repeat).items()}
    p1, o1, pn, on = (rate[k] for k in ("picpipe_1", "openssl_1", "picpipe_n", "openssl_n"))
    n = cores
    figures = [figure("picpipe sha256_file, 1 thread", p1, "openssl dgst -sha256", o1, "MB/s")]
    verdicts = [verdict("hashing >= 0.8x openssl on one core", p1 / o1 >= 0.8, f"{p1 / o1:.2f}x")]
    notes: list[str] = []
    if cores > 1:
        figures += [
            figure(f"picpipe, {n} threads", pn, f"openssl, {n} processes", on, "MB/s"),
            figure(f"picpipe, {n} threads / 1 thread", pn / p1, "openssl, same", on / o1, "x"),
        ]
        target = f"hashing scales with cores (>= 0.8x openssl on all {n})"
        detail = f"{pn / on:.2f}x; speed-up {pn / p1:.2f}x, openssl's {on / o1:.2f}x"
        verdicts.append(verdict(target, pn / on >= 0.8, detail))
        if on / o1 < 0.75 * n:  # the baseline itself did not scale: other load on the machine
            notes.append(f"openssl gained only {on / o1:.2f}x on {n} cores: they were not idle")
    title = f"hashing {len(names)} files, {total / MB:.0f} MB, warm page cache"
    return {"title": title, "figures": figures, "notes": notes, "verdicts": verdicts}


def timed_stages(seconds: dict[str, float]) -> list[Stage]:
    """The import stages, each adding its wall time to ``seconds[name]`` from every thread."""
    lock = threading.Lock()

    def wrap(stage: Stage, name: str) -> Stage:
        def timed(ctx: StageContext, task: ImportTask) -> None:
            start = time.perf_counter()
            try:
                stage(ctx, task)
            finally:
                with lock:
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start

        return timed

    return [wrap(s, s.__name__.removesuffix("_stage")) for s in IMPORT_STAGES]


def bench_import(files: list[Path], out: Path, repeat: int, workers: int) -> Section:
    """Import the JPEGs into a fresh library (fsync on); baseline: ``cp`` then ``sync`` them."""
    source_dir = files[0].parent.resolve()
    total, n, work = sum(f.stat().st_size for f in files), len(files), out / "work"
    runs: list[dict[str, float]] = []  # per run: "import" and "copy" wall times, stage sums
    for _ in range(repeat):
        shutil.rmtree(work, ignore_errors=True)  # a fresh library each run: all files are new
        settings = load_settings(home=work / "home", library=work / "library")
        catalog = open_catalog(settings.catalog_url)
        tools = ExifToolPool()
        stage_s = dict.fromkeys((s.__name__.removesuffix("_stage") for s in IMPORT_STAGES), 0.0)
        try:
            stages = timed_stages(stage_s)
            source = FolderSource(str(source_dir), source_dir, settings.scan)
            start = time.perf_counter()
            summary = import_sources(
                settings, catalog, [source], tools=tools, workers=workers, stages=stages
            )
            imported = time.perf_counter() - start
        finally:
            tools.close()
            catalog.close()
        if summary.new != n:
            raise SystemExit(f"import of the JPEGs went wrong: {summary.as_dict()}")
        (work / "cp").mkdir()
        start = time.perf_counter()
        subprocess.run(["cp", "-t", str(work / "cp"), *map(str, files)], check=True)
        copied = [str(work / "cp" / f.name) for f in files]
        subprocess.run(["sync", *copied], check=True)  # fsyncs each file, as the import does
        runs.append({"import": imported, "copy": time.perf_counter() - start, **stage_s})
    shutil.rmtree(work, ignore_errors=True)
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    wall, copy = med.pop("import"), med.pop("copy")
    busy = sum(med.values()) or 1.0
    shares = ", ".join(f"{k} {v:.2f} s ({v / busy:.0%})" for k, v in med.items())
    return {
        "title": f"import of the JPEGs ({n} files, fresh library, fsync on, {workers} workers)",
        "figures": [
            figure("picpipe import", total / wall / MB, "cp + sync", total / copy / MB, "MB/s"),
            figure("picpipe import", n / wall, "cp + sync", n / copy, "files/s"),
        ],
        "notes": [f"time per stage, summed over the worker threads: {shares}"],
        "stage_seconds": med,
        "verdicts": [],
    }


def _cli(home: Path, library: Path, *args: str) -> list[str]:
    return [PICPIPE, "--home", str(home), "--library", str(library), *args]


def _sql(db: Path, query: str) -> int:
    """One number from the catalog, read-only (WAL lets this run beside a writing import)."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute(query).fetchone()
    except sqlite3.Error:
        return -1
    return int(row[0]) if row and row[0] is not None else 0


def ensure_tree_import(out: Path, tree: Path, stamp: str, count: int, workers: int) -> Section:
    """Import the small tree once with the CLI (fsync off), cached under ``--out``."""
    home, library, marker = out / "tree-home", out / "tree-library", out / "tree-import.json"
    db = home / "catalog.db"
    info = load_json(marker)
    if info.get("tree") == stamp and _sql(db, "SELECT count(*) FROM source_file") == count:
        return info | {"reused": True}
    marker.unlink(missing_ok=True)
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(library, ignore_errors=True)
    home.mkdir(parents=True)
    # Durability is not what the rescan measures, and fsync would make this import far longer.
    (home / "config.yaml").write_text("import:\n  fsync: false\n")
    log(f"importing the {count}-file tree once (exiftool ~3 ms per file; cached afterwards) ...")
    done = "SELECT new + duplicate + failed FROM session ORDER BY id DESC LIMIT 1"
    cmd = _cli(home, library, "import", str(tree), "--json", "--workers", str(workers))
    child = run_child(cmd, lambda: f"{_sql(db, done)} files recorded")
    if child.code != 0:
        raise SystemExit(f"tree import failed ({child.code}): {child.stderr or child.stdout}")
    new = json.loads(child.stdout)["new"]
    log(f"  done in {child.seconds:.0f} s: {new} new")
    info = {"tree": stamp, "seconds": child.seconds, "rss_mb": child.rss_mb, "workers": workers}
    marker.write_text(json.dumps(info))
    return info | {"reused": False}


def bench_rescan(
    out: Path, tree: Path, count: int, workers: int, repeat: int, tree_import: Section
) -> tuple[Section, Section]:
    """Unchanged rescan (in-process and CLI) against find, all warm; and the CLI's peak RSS."""
    home, library = out / "tree-home", out / "tree-library"
    tree = tree.resolve()  # the CLI names a folder source by its resolved path; match it
    settings = load_settings(home=home, library=library)
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    summaries: list[SessionSummary] = []
    children: dict[str, list[ChildRun]] = {"cli": [], "version": []}
    cmd = _cli(home, library, "import", str(tree), "--json", "--workers", str(workers))

    def in_process() -> None:
        source = FolderSource(str(tree), tree, settings.scan)
        summaries.append(
            import_sources(
                settings, catalog, [source], tools=tools, workers=workers, stages=IMPORT_STAGES
            )
        )

    def child(kind: str, argv: list[str]) -> None:
        ran = run_child(argv)
        if ran.code != 0 or (kind == "cli" and json.loads(ran.stdout)["unchanged"] != count):
            raise SystemExit(f"{argv} went wrong ({ran.code}): {ran.stderr or ran.stdout}")
        children[kind].append(ran)

    def find() -> None:
        listing = ["find", str(tree), "-printf", "%s %T@ %p\\n"]
        subprocess.run(listing, stdout=subprocess.DEVNULL, check=True)

    jobs: dict[str, Callable[[], object]] = {
        "in_process": in_process,
        "cli": lambda: child("cli", cmd),
        "version": lambda: child("version", [PICPIPE, "--version"]),
        "find": find,
    }
    try:
        for job in jobs.values():
            job()  # warm-up: page cache, catalog pages, interpreter and tool files
        t = medians(jobs, repeat)
    finally:
        tools.close()
        catalog.close()
    wrong = [s.as_dict() for s in summaries if s.unchanged != count or s.seen != count]
    if wrong:
        raise SystemExit(f"rescan did not find all {count} files unchanged: {wrong[0]}")
    ratio, when = t["in_process"] / t["find"], "cached" if tree_import["reused"] else "this run"
    rescan = {
        "title": f"unchanged rescan of {count} files, warm (the target is for the scan itself)",
        "figures": [
            figure("in-process import_sources (the scan)", t["in_process"], FIND, t["find"], "s"),
            figure("CLI import --json (with start-up)", t["cli"], FIND, t["find"], "s"),
        ],
        "notes": [
            f"CLI start-up alone (picpipe --version): {t['version']:.2f} s",
            f"one-time import of the tree ({when}, fsync off, {tree_import.get('workers')} workers)"
            f": {tree_import['seconds']:.0f} s, {count / tree_import['seconds']:.0f} files/s",
        ],
        "verdicts": [verdict("unchanged rescan <= 2x find", ratio <= 2.0, f"{ratio:.2f}x")],
    }
    idle = max(c.rss_mb for c in children["version"])
    rescan_mb, import_mb = max(c.rss_mb for c in children["cli"]), tree_import["rss_mb"]
    peak, idle_label = max(rescan_mb, import_mb), "picpipe --version"
    target = f"peak RSS < {RSS_LIMIT_MB:.0f} MB at {count} files"
    rss = {
        "title": "peak RSS: largest process of the CLI's tree (picpipe or one of its exiftools)",
        "figures": [
            figure(f"CLI rescan of {count} files", rescan_mb, idle_label, idle, "MB"),
            figure(f"CLI import of them ({when})", import_mb, idle_label, idle, "MB"),
            figure("peak of the two", peak, "target", RSS_LIMIT_MB, "MB"),
        ],
        "verdicts": [verdict(target, peak < RSS_LIMIT_MB, f"{peak:.0f} MB")],
    }
    return rescan, rss


# -- report ------------------------------------------------------------------------------------

SECTIONS = ("hashing", "import", "rescan", "rss")


def _num(value: float, unit: str) -> str:
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def print_report(report: dict[str, Any]) -> None:
    p = report["params"]
    print(f"picpipe import benchmark: {os.cpu_count()} cores, {p['workers']} workers, medians of "
          f"{p['repeat']} runs; data in {p['out']} ({p['data']})")  # fmt: skip
    print(f"\n  {'figure':<54} {'baseline':<45} ratio")
    for key in SECTIONS:
        section = report[key]
        print(section["title"])
        for f in section["figures"]:
            value, base = _num(f["value"], f["unit"]), _num(f["baseline"], f["unit"])
            label, base_label, ratio = f["label"], f["baseline_label"], f["ratio"]
            print(f"  {label:<40} {value:>13}  {base_label:<30} {base:>13}  {ratio:5.2f}x")
        for note in section.get("notes", []):
            print(f"  {note}")
    print("\nverdicts")
    for v in report["verdicts"]:
        print(f"  {v['target']}: {'met' if v['met'] else 'NOT MET'} ({v['detail']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jpegs", type=int, default=40, help="big JPEGs (default 40)")
    parser.add_argument("--small", type=int, default=100_000, help="small files (default 100000)")
    parser.add_argument("--workers", type=int, default=None, help="default: picpipe's default")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--repeat", type=int, default=5, help="runs per median (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.jpegs, args.small, args.repeat, args.workers or 1) < 1:
        parser.error("counts must be at least 1")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    workers = args.workers or load_settings(home=out / "work" / "home").workers

    files, jpegs_reused = ensure_jpegs(out, args.jpegs)
    tree, stamp, tree_reused = ensure_tree(out, args.small)
    how = ("generated", "reused")
    data = f"JPEGs {how[jpegs_reused]}, small tree {how[tree_reused]}"
    report: dict[str, Any] = {"params": vars(args) | {"workers": workers, "out": str(out)}}
    report["params"]["data"] = data
    log("hashing ...")
    report["hashing"] = bench_hash(files, args.repeat)
    log("importing the JPEGs ...")
    report["import"] = bench_import(files, out, args.repeat, workers)
    tree_import = ensure_tree_import(out, tree, stamp, args.small, workers)
    log("rescanning the unchanged tree ...")
    report["rescan"], report["rss"] = bench_rescan(
        out, tree, args.small, workers, args.repeat, tree_import
    )
    report["tree_import"] = tree_import
    report["verdicts"] = [v for key in SECTIONS for v in report[key]["verdicts"]]
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
