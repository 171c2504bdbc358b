"""Before/after benchmark: the same picpipe commands on two code trees, interleaved.

A restructure must cost no throughput. This bench runs the real CLI of this checkout and of a
baseline checkout (``git worktree add ../base <commit>``) with ``PYTHONPATH`` pointing at each
tree's ``src``, round by round in alternating order, on the same generated photos, and prints
medians and the ratio of this tree to the baseline (the machine is noisy: ratios, same run):

- import: ``picpipe import SRC --no-thumbs`` of N big JPEGs into a fresh library (fsync on);
- rescan: the same import again, nothing changed (the scan and unchanged check);
- thumbs: ``picpipe thumbs --all`` on that library (2 processes);
- sync: ``picpipe sync`` of that library to a fresh filesystem destination (fsync on);
- import+thumbs (with the thumbs step): the two added up, what a plain ``picpipe import``
  (thumbnails included, the default) costs.

Each tree keeps its own home, library and catalog (a baseline cannot open a newer catalog).
From the repo:

    git worktree add ../base 4fffcf9
    .venv/bin/python bench/compare_bench.py --baseline-src ../base/src [--this-src DIR/src]
        [--jpegs N] [--repeat N]

Progress goes to stderr; the report (with ``--json``, one JSON object) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from picpipe.samples import make_jpeg

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
HERE = Path(__file__).resolve().parents[1] / "src"
STEPS = ("import", "rescan", "thumbs", "sync")


def photos(folder: Path, count: int, *, gps: bool = False) -> tuple[list[Path], int]:
    """``count`` distinct ~12 MP JPEGs (made once, kept under --out); with ``gps``, each at a
    different place, as a phone's are (the time-zone and place-name lookups then run)."""
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(2022, 7, 1, 9, 0)
    paths = []
    for i in range(count):
        path = folder / f"IMG_{i:04d}.jpg"
        if not path.exists():
            when = start + timedelta(hours=i * 5)
            where = (48.0 + i * 0.37 % 10, 2.0 + i * 0.53 % 12) if gps else None
            make_jpeg(
                path, size=(4000, 3000), taken=when, seed=i, noise=48.0, quality=92, gps=where
            )
        paths.append(path)
    return paths, sum(p.stat().st_size for p in paths)


class Tree:
    """One code tree and its own home, library, catalog and destination."""

    def __init__(self, name: str, src: Path, work: Path) -> None:
        self.name, self.src, self.work = name, src.resolve(), work / name
        self.config = self.work / "config.yaml"
        # CPU seconds of each command, in order: on a machine others share, CPU time is far
        # steadier than wall time (which waits for the other users' processes).
        self.cpu: list[float] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
        return env | {"PYTHONPATH": str(self.src), "PICPIPE_CONFIG": str(self.config)}

    def cli(self, *args: str) -> float:
        """Wall seconds of one command; its CPU seconds (exiftool's included) go to ``cpu``."""
        cmd = [PICPIPE, "--home", str(self.work / "home"), "--library", str(self.work / "lib")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([*cmd, *args], env=self.env(), capture_output=True, text=True)
        seconds = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: picpipe {' '.join(args)} failed:\n{done.stderr}")
        used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        self.cpu.append(used)
        return seconds

    def fresh(self) -> None:
        # A user's home outlives one import: what picpipe keeps there for the next process
        # (the place-name grid under home/cache) stays, as it would for them.
        kept = self.work / "home" / "cache"
        parked = self.work.with_name(f"{self.name}-cache")
        shutil.rmtree(parked, ignore_errors=True)
        if kept.is_dir():
            kept.rename(parked)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        if parked.is_dir():
            (self.work / "home").mkdir()
            parked.rename(kept)
        dest = self.work / "nas"
        self.config.write_text(
            f"destinations:\n  nas:\n    kind: filesystem\n    path: {dest}\n"
            "thumbs:\n  workers: 2\n"
        )

    def round(self, source: Path, steps: tuple[str, ...] = STEPS) -> dict[str, float]:
        """One of each step on a fresh library and destination (``steps``: a prefix of STEPS)."""
        self.fresh()
        out = {"import": self.cli("import", str(source), "--no-thumbs", "--json")}
        out["import_cpu"] = self.cpu[-1]
        if "rescan" in steps:
            out["rescan"] = self.cli("import", str(source), "--no-thumbs", "--json")
            out["rescan_cpu"] = self.cpu[-1]
        if "thumbs" in steps:
            out["thumbs"] = self.cli("thumbs", "--all", "--json")
            out["thumbs_cpu"] = self.cpu[-1]
        if "sync" in steps:
            (self.work / "nas").mkdir(exist_ok=True)
            out["sync"] = self.cli("sync", "--json")
            out["sync_cpu"] = self.cpu[-1]
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-src", type=Path, required=True, help="baseline tree's src/")
    parser.add_argument(
        "--this-src", type=Path, default=HERE, help="the tree to measure (default: this one)"
    )
    parser.add_argument("--jpegs", type=int, default=30, help="12 MP JPEGs (default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per median (default 3)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help="comma-separated subset of the steps (default all)"
    )
    parser.add_argument("--gps", action="store_true", help="photos with GPS positions")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    steps = tuple(s for s in STEPS if s in args.steps.split(","))
    if "import" not in steps:
        raise SystemExit("--steps: the import step is always run (the others build on it)")
    if not (args.baseline_src / "picpipe").is_dir():
        raise SystemExit(f"{args.baseline_src}: not a picpipe src/ folder")
    source = args.out / "compare" / ("photos-gps" if args.gps else "photos")
    files, total = photos(source, args.jpegs, gps=args.gps)
    work = args.out / "compare" / "work"
    trees = [Tree("baseline", args.baseline_src, work), Tree("this", args.this_src, work)]
    runs: dict[str, list[dict[str, float]]] = {t.name: [] for t in trees}
    for number in range(args.repeat):
        order = trees if number % 2 == 0 else list(reversed(trees))
        for tree in order:
            print(f"round {number + 1}: {tree.name}", file=sys.stderr)
            runs[tree.name].append(tree.round(source, steps))
    figures: dict[str, Any] = {
        "files": len(files),
        "bytes": total,
        "repeat": args.repeat,
        "gps": args.gps,
    }
    if "thumbs" in steps:
        # What a user's `picpipe import` costs: it makes the thumbnails too, by default.
        for rounds in runs.values():
            for r in rounds:
                r["import+thumbs"] = r["import"] + r["thumbs"]
                r["import+thumbs_cpu"] = r["import_cpu"] + r["thumbs_cpu"]
        steps = (*steps, "import+thumbs")
    for step in steps:
        base = statistics.median(r[step] for r in runs["baseline"])
        this = statistics.median(r[step] for r in runs["this"])
        base_cpu = statistics.median(r[f"{step}_cpu"] for r in runs["baseline"])
        this_cpu = statistics.median(r[f"{step}_cpu"] for r in runs["this"])
        figures[step] = {
            "baseline_s": round(base, 3),
            "this_s": round(this, 3),
            "baseline_cpu_s": round(base_cpu, 3),
            "this_cpu_s": round(this_cpu, 3),
            "cpu_ratio": round(this_cpu / base_cpu, 3),  # > 1 costs more CPU than the baseline
            # throughput ratio: > 1 is faster than the baseline
            "ratio": round(base / this, 3),
            "mb_per_s": round(total / 1e6 / this, 1)
            if step in ("import", "sync", "import+thumbs")
            else None,
        }
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{len(files)} JPEGs, {total / 1e6:.0f} MB, medians of {args.repeat}, interleaved")
    print(f"{'step':<13} {'baseline':>10} {'this tree':>10} {'ratio':>7}   CPU: base, this, ratio")
    for step in steps:
        f = figures[step]
        print(
            f"{step:<13} {f['baseline_s']:>9.2f}s {f['this_s']:>9.2f}s {f['ratio']:>6.2f}x"
            f"   {f['baseline_cpu_s']:.2f}s {f['this_cpu_s']:.2f}s {f['cpu_ratio']:.2f}x"
        )


if __name__ == "__main__":
    main()
