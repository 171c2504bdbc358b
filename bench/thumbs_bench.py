"""Thumbnail benchmark: picpipe's thumbnail stage against vipsthumbnail and a bare pyvips loop.

Generates 12-megapixel JPEGs (noise and gradients, 2-5 MB) and HEICs under ``--out`` (reused by
later runs), imports each set into its own library, then measures on the same warm files:

- per-image cost of all three sizes on one process: picpipe's worker function, the bare
  reference (pyvips: header, one decode with JPEG shrink-on-load, medium, then small and tiny
  cascaded from it, nothing else), and libvips' own ``thumbnail()`` for comparison;
- images/s on 1 and 2 processes, end to end: picpipe's ``ThumbRun`` (pool start, catalog
  writes, metadata JSON included), the reference in a process pool, and ``vipsthumbnail``
  (Debian libvips-tools) run the way the tool is meant for batches: one run per size over a
  process's share of the files (three decodes per image, as three sizes need);
- peak RSS of ``picpipe thumbs --all`` (its largest process) and of vipsthumbnail;
- RAW and video files from ``../shared/testdata/media`` when present (figures only).

Targets (JPEG): picpipe >= 0.9x the bare reference and >= 2x vipsthumbnail, on 1 and 2
processes. From the repo:

    .venv/bin/python bench/thumbs_bench.py [--jpegs N] [--heics N] [--repeat N] [--json]

Progress goes to stderr; the report (with ``--json``, one JSON object) to stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from picpipe.catalog.db import Catalog, open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import Settings, load_settings
from picpipe.jobs.workflows import import_sources
from picpipe.pipeline.decoders import fit
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.stages import IMPORT_STAGES
from picpipe.pipeline.thumbrun import ThumbRun, cpu_count
from picpipe.pipeline.thumbs import BOXES, ThumbJob, init_worker, make_thumbnails
from picpipe.samples import make_jpeg
from picpipe.sources.folder import FolderSource

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "media"
DATA_VERSION = 1
MB = 1e6
CORES = cpu_count()
FORK = multiprocessing.get_context("fork")  # like picpipe's pool; this process runs no libvips op
Section = dict[str, Any]  # title, figures, notes, verdicts: printed, or dumped by --json

# Spawns the command and reports its largest process's peak RSS (ru_maxrss of waited children).
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


def figure(label: str, value: float, base_label: str, base: float, unit: str) -> dict[str, Any]:
    return dict(
        label=label,
        value=value,
        unit=unit,
        baseline_label=base_label,
        baseline=base,
        ratio=value / base if base else float("nan"),
    )


def verdict(target: str, met: bool, detail: str) -> dict[str, Any]:
    return {"target": target, "met": met, "detail": detail}


# -- data ----------------------------------------------------------------------------------------


def _taken(i: int) -> datetime:
    return datetime(2022, 3, 1, 9, 0, 0) + timedelta(days=i, minutes=17 * i)


def _make_jpeg(job: tuple[Path, int]) -> None:
    path, i = job
    noise = 10.0 + (i * 7) % 15  # 10-24: files of about 2.5 to 4.5 MB
    make_jpeg(path, size=(4000, 3000), taken=_taken(i), seed=i, noise=noise, quality=85)


def _make_heic(job: tuple[Path, int]) -> None:
    import pillow_heif
    from PIL import Image

    path, i = job
    source = path.with_suffix(".src.jpg")
    make_jpeg(source, size=(4000, 3000), taken=_taken(i), seed=100 + i, noise=4.0, quality=95)
    pillow_heif.register_heif_opener()
    with Image.open(source) as image:
        exif = image.info.get("exif")
        image.save(path, format="HEIF", quality=60, exif=exif)
    source.unlink()


def ensure_files(out: Path, kind: str, count: int) -> tuple[list[Path], bool]:
    """``count`` generated files of ``kind`` (jpeg, heic); reused when complete."""
    folder, manifest = out / kind, out / f"{kind}.json"
    wanted = {"version": DATA_VERSION, "count": count}
    files = [folder / f"IMG_{_taken(i):%Y%m%d_%H%M%S}_{i:03d}.{kind}" for i in range(count)]
    if load_json(manifest) == wanted and all(f.is_file() for f in files):
        return files, True
    manifest.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"generating {count} 12-megapixel {kind.upper()} files in {folder} (once) ...")
    make = _make_jpeg if kind == "jpeg" else _make_heic
    with ProcessPoolExecutor(CORES, mp_context=FORK) as pool:
        list(pool.map(make, [(f, i) for i, f in enumerate(files)]))
    manifest.write_text(json.dumps(wanted))
    return files, False


def build_library(root: Path, folder: Path) -> tuple[Settings, Catalog, list[ThumbJob]]:
    """Import ``folder`` into a new library (no thumbnails); the jobs picpipe would run."""
    shutil.rmtree(root, ignore_errors=True)
    settings = load_settings(
        home=root / "home", library=root / "library", **{"import": {"fsync": False}}
    )
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        source = FolderSource("bench", folder, settings.scan)
        import_sources(
            settings, catalog, [source], tools=tools, workers=CORES, stages=IMPORT_STAGES
        )
    finally:
        tools.close()
    with catalog.session() as db:
        rows = db.execute(select(Asset.sha256, Asset.library_path, Asset.kind)).all()
    jobs = [
        ThumbJob(sha, str(settings.library_root / path), kind, str(settings.home_root))
        for sha, path, kind in sorted(rows, key=lambda r: r[1])
    ]
    for job in jobs:
        Path(job.original).read_bytes()  # warm page cache: this measures decoding, not the disk
    return settings, catalog, jobs


# -- the bare reference and libvips' thumbnail() -------------------------------------------------


def _vips_init(threads: int) -> None:
    import pyvips

    pyvips.cache_set_max(0)
    pyvips.concurrency_set(threads)


def reference(job: tuple[str, str]) -> float:
    """The fastest plain pyvips way: one decode with shrink-on-load, three sizes cascaded."""
    import pyvips

    path, out = job
    start = time.perf_counter()
    header = pyvips.Image.new_from_file(path, access="sequential")
    width, height = header.width, header.height
    mw, mh = fit((width, height), BOXES["medium"])
    image = header
    if header.get("vips-loader") == "jpegload":
        shrink = next(s for s in (8, 4, 2, 1) if -(-width // s) >= mw and -(-height // s) >= mh)
        image = pyvips.Image.new_from_file(path, access="sequential", shrink=shrink)
    medium = image.resize(mw / image.width, vscale=mh / image.height).copy_memory()
    medium.jpegsave(f"{out}_medium.jpg", Q=85, strip=True)
    sw, sh = fit((mw, mh), BOXES["small"])
    small = medium.resize(sw / mw, vscale=sh / mh).copy_memory()
    small.jpegsave(f"{out}_small.jpg", Q=85, strip=True)
    tw, th = fit((sw, sh), BOXES["tiny"])
    small.resize(tw / sw, vscale=th / sh).jpegsave(f"{out}_tiny.jpg", Q=85, strip=True)
    return time.perf_counter() - start


def builtin(job: tuple[str, str]) -> float:
    """libvips' own thumbnail(): its shrink-on-load leaves a 2x residual (8.14: full decode)."""
    import pyvips

    path, out = job
    start = time.perf_counter()
    medium = pyvips.Image.thumbnail(path, 1920, height=1080, size="down").copy_memory()
    medium.jpegsave(f"{out}_medium.jpg", Q=85, strip=True)
    small = medium.thumbnail_image(500, height=500, size="down").copy_memory()
    small.jpegsave(f"{out}_small.jpg", Q=85, strip=True)
    small.thumbnail_image(150, height=150).jpegsave(f"{out}_tiny.jpg", Q=85, strip=True)
    return time.perf_counter() - start


def _picpipe_worker(job: ThumbJob) -> float:
    result = make_thumbnails(job)
    if not result.ok:
        raise RuntimeError(f"{job.original}: {result.reason}")
    return result.seconds


def pool_times(
    func: Callable[[Any], float],
    jobs: Sequence[Any],
    procs: int,
    init: Callable[[int], None],
) -> tuple[float, list[float]]:
    """Wall time of ``func`` over ``jobs`` in a new pool of ``procs`` (start included)."""
    start = time.perf_counter()
    with ProcessPoolExecutor(
        procs, mp_context=FORK, initializer=init, initargs=(max(1, CORES // procs),)
    ) as pool:
        each = list(pool.map(func, jobs))
    return time.perf_counter() - start, each


def rotated(methods: dict[str, Callable[[], Any]], repeat: int) -> list[tuple[str, Any]]:
    """Each method ``repeat`` times, interleaved, each round starting with the next method (so
    warm-up and noise hit every method alike)."""
    names = list(methods)
    out = []
    for r in range(repeat):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out.append((name, methods[name]()))
    return out


# -- vipsthumbnail -------------------------------------------------------------------------------


def vipsthumbnail(files: Sequence[str], procs: int, out: Path) -> float:
    """Each of ``procs`` chains runs vipsthumbnail once per size over its share of the files."""
    env = os.environ | {"VIPS_CONCURRENCY": str(max(1, CORES // procs))}

    def chain(share: Sequence[str]) -> None:
        for size, (w, h) in BOXES.items():
            pattern = f"{out}/%s_{size}.jpg[Q=85,strip]"
            cmd = ["vipsthumbnail", *share, "-s", f"{w}x{h}", "-o", pattern]
            subprocess.run(cmd, check=True, env=env, capture_output=True)

    threads = [threading.Thread(target=chain, args=(files[i::procs],)) for i in range(procs)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def launched(cmd: Sequence[str]) -> tuple[float, float, str]:
    """Run ``cmd`` under LAUNCHER: (seconds, peak RSS in MB of its largest process, stdout)."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp, "stats")
        proc = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(stats), *cmd], capture_output=True, text=True
        )
        if proc.returncode not in (0, 3) or not stats.exists():
            raise SystemExit(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
        maxrss, seconds = stats.read_text().split()
        return float(seconds), int(maxrss) * 1024 / MB, proc.stdout


# -- one format ----------------------------------------------------------------------------------


def bench_format(kind: str, folder: Path, work: Path, repeat: int, targets: bool) -> Section:
    settings, catalog, jobs = build_library(work / kind, folder)
    n = len(jobs)
    out = work / f"{kind}-out"
    out.mkdir(parents=True, exist_ok=True)
    plain = [(job.original, str(out / job.sha256)) for job in jobs]
    originals = [job.original for job in jobs]
    mb = sum(Path(p).stat().st_size for p in originals) / n / MB
    section: Section = {
        "title": f"{kind.upper()}: {n} files of 4000x3000, {mb:.1f} MB on average",
        "figures": [],
        "notes": [],
        "verdicts": [],
    }

    log(f"{kind}: per-image cost on one process ...")
    each: dict[str, Callable[[], list[float]]] = {
        "picpipe": lambda: pool_times(_picpipe_worker, jobs, 1, init_worker)[1],
        "reference": lambda: pool_times(reference, plain, 1, _vips_init)[1],
    }
    if kind == "jpeg":
        each["builtin"] = lambda: pool_times(builtin, plain, 1, _vips_init)[1]
    per: dict[str, list[float]] = {name: [] for name in each}
    for name, times in rotated(each, repeat):
        per[name] += times
    ms = {k: statistics.median(v) * 1000 for k, v in per.items()}
    vt_1 = statistics.median(vipsthumbnail(originals, 1, out) for _ in range(repeat))
    ms["vipsthumbnail"] = vt_1 / n * 1000
    section["figures"] += [
        figure(
            "picpipe worker, ms per image",
            ms["picpipe"],
            "bare pyvips reference",
            ms["reference"],
            "ms",
        ),
        figure(
            "picpipe worker, ms per image",
            ms["picpipe"],
            "vipsthumbnail (3 sizes)",
            ms["vipsthumbnail"],
            "ms",
        ),
    ]
    if kind == "jpeg":
        section["figures"].append(
            figure(
                "libvips thumbnail(), ms per image",
                ms["builtin"],
                "bare pyvips reference",
                ms["reference"],
                "ms",
            )
        )

    for procs in (1, 2):
        log(f"{kind}: throughput on {procs} process(es) ...")

        def picpipe(procs: int = procs) -> float:
            run = ThumbRun(
                catalog,
                home=settings.home_root,
                library_root=settings.library_root,
                options=settings.thumbs,
                workers=procs,
            )
            start = time.perf_counter()
            summary = run.run("all")
            if summary.made != n:
                raise SystemExit(f"picpipe made {summary.made} of {n}: {summary.failures[:3]}")
            return time.perf_counter() - start

        methods: dict[str, Callable[[], float]] = {
            "picpipe": picpipe,
            "reference": lambda procs=procs: pool_times(reference, plain, procs, _vips_init)[0],
            "vipsthumbnail": lambda procs=procs: vipsthumbnail(originals, procs, out),
        }
        runs: dict[str, list[float]] = {name: [] for name in methods}
        for name, seconds in rotated(methods, repeat):
            runs[name].append(seconds)
        rate = {k: n / statistics.median(v) for k, v in runs.items()}
        section["figures"] += [
            figure(
                f"picpipe thumbs, {procs} proc, images/s",
                rate["picpipe"],
                "bare pyvips reference",
                rate["reference"],
                "img/s",
            ),
            figure(
                f"picpipe thumbs, {procs} proc, images/s",
                rate["picpipe"],
                "vipsthumbnail",
                rate["vipsthumbnail"],
                "img/s",
            ),
        ]
        if targets:
            r_ref = rate["picpipe"] / rate["reference"]
            r_vt = rate["picpipe"] / rate["vipsthumbnail"]
            section["verdicts"] += [
                verdict(
                    f"{kind.upper()} {procs} proc: picpipe >= 0.9x bare reference",
                    r_ref >= 0.9,
                    f"{r_ref:.2f}x",
                ),
                verdict(
                    f"{kind.upper()} {procs} proc: picpipe >= 2x vipsthumbnail",
                    r_vt >= 2.0,
                    f"{r_vt:.2f}x",
                ),
            ]

    log(f"{kind}: peak RSS ...")
    for procs in (1, 2):
        cli = [
            PICPIPE,
            "--home",
            str(settings.home_root),
            "--library",
            str(settings.library_root),
            "thumbs",
            "--all",
            "--json",
            "--workers",
            str(procs),
        ]
        seconds, rss, stdout = launched(cli)
        made = json.loads(stdout)["made"]
        share = originals[: max(1, n // procs)]
        vt_env = ["env", f"VIPS_CONCURRENCY={max(1, CORES // procs)}"]
        vt_cmd = [
            *vt_env,
            "vipsthumbnail",
            *share,
            "-s",
            "1920x1080",
            "-o",
            f"{out}/%s_m.jpg[Q=85,strip]",
        ]
        _, vt_rss, _ = launched(vt_cmd)
        section["figures"].append(
            figure(
                f"picpipe thumbs CLI, {procs} proc, peak RSS",
                rss,
                "vipsthumbnail (one run)",
                vt_rss,
                "MB",
            )
        )
        section["notes"].append(
            f"`picpipe thumbs --all --workers {procs}` as a command: {made} images in "
            f"{seconds:.2f} s, {made / seconds:.2f} images/s including Python start-up"
        )
    catalog.close()
    section["notes"] += [
        "vipsthumbnail per image = its three batch runs (one per size) over all files / n",
        f"libvips {_vips_version()}: thumbnail() keeps a 2x residual after shrink-on-load, so "
        "a 1920x1080 box from 4000x3000 decodes at full size; picpipe and the reference load "
        "at 1/2 (DCT scaling), still above the medium size",
    ]
    return section


def _vips_version() -> str:
    proc = subprocess.run(["vips", "--version"], capture_output=True, text=True)
    return proc.stdout.strip().removeprefix("vips-") or "?"


# -- RAW and video from the shared media ---------------------------------------------------------

SHARED = {
    "raw": ["raw/CRW.CRW", "raw/canon_eos_6d.dng"],
    "video": [
        "iphone/train.mov",
        "video/with-gps.mp4",
        "video/quicktime-hvc1.mov",
        "video/Sony ILCE-7M3 (A7M3).mts",
        "video/MVI_4823.AVI",
    ],
}


def bench_shared(work: Path, repeat: int) -> Section:
    section: Section = {
        "title": "RAW and video (../shared/testdata/media), picpipe worker",
        "figures": [],
        "notes": [],
        "verdicts": [],
    }
    if not MEDIA.is_dir():
        section["notes"].append(f"skipped: {MEDIA} is absent")
        return section
    home = work / "shared-home"
    for kind, names in SHARED.items():
        jobs = [
            ThumbJob(f"{i:064x}", str(MEDIA / name), kind, str(home))
            for i, name in enumerate(names)
        ]
        times = [pool_times(_picpipe_worker, jobs, 1, init_worker)[1] for _ in range(repeat)]
        for i, name in enumerate(names):
            ms = statistics.median(t[i] for t in times) * 1000
            size = Path(MEDIA / name).stat().st_size / MB
            section["notes"].append(f"{kind:5} {name:<34} {size:5.1f} MB  {ms:7.1f} ms per file")
    section["notes"].append(
        "CRW (2176x1448): the 1440x960 preview is short of the medium size, "
        "so LibRaw decodes; the DNG likewise (1024x683 preview)"
    )
    return section


# -- report --------------------------------------------------------------------------------------


def _num(value: float, unit: str) -> str:
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:.{digits}f} {unit}"


def print_report(report: dict[str, Any]) -> None:
    p = report["params"]
    print(
        f"picpipe thumbnail benchmark: {CORES} cores, libvips {_vips_version()}, medians of "
        f"{p['repeat']} runs; data in {p['out']} ({p['data']})"
    )
    print("ratio = value / baseline: for ms and MB lower is better, for images/s higher")
    print(f"\n  {'figure':<44} {'value':>12}  {'baseline':<26} {'value':>12}  ratio")
    for section in report["sections"]:
        print(section["title"])
        for f in section["figures"]:
            value, base = _num(f["value"], f["unit"]), _num(f["baseline"], f["unit"])
            print(
                f"  {f['label']:<44} {value:>12}  {f['baseline_label']:<26} {base:>12}  "
                f"{f['ratio']:5.2f}x"
            )
        for note in section["notes"]:
            print(f"  {note}")
    print("\nverdicts")
    for v in report["verdicts"]:
        print(f"  {v['target']}: {'met' if v['met'] else 'NOT MET'} ({v['detail']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jpegs", type=int, default=40, help="12 MP JPEGs (default 40)")
    parser.add_argument("--heics", type=int, default=8, help="12 MP HEICs (default 8)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--repeat", type=int, default=3, help="runs per median (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if min(args.jpegs, args.heics, args.repeat) < 1:
        parser.error("counts must be at least 1")
    if shutil.which("vipsthumbnail") is None:
        parser.error("vipsthumbnail is missing: bash scripts/setup installs libvips-tools")
    out: Path = args.out.resolve() / "thumbs"
    out.mkdir(parents=True, exist_ok=True)
    jpegs, jpegs_reused = ensure_files(out, "jpeg", args.jpegs)
    heics, heics_reused = ensure_files(out, "heic", args.heics)
    how = ("generated", "reused")
    report: dict[str, Any] = {"params": vars(args) | {"out": str(out), "cores": CORES}}
    report["params"]["data"] = f"JPEGs {how[jpegs_reused]}, HEICs {how[heics_reused]}"
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    try:
        report["sections"] = [
            bench_format("jpeg", jpegs[0].parent, work, args.repeat, targets=True),
            bench_format("heic", heics[0].parent, work, args.repeat, targets=False),
            bench_shared(work, args.repeat),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["verdicts"] = [v for s in report["sections"] for v in s["verdicts"]]
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
