"""Start-up cost of quick commands against ``python3 -c pass``, in the same run.

Each command runs ``--repeat`` times in a fresh home (interleaved with the baseline, since
the machine is shared); medians of wall seconds and of CPU seconds (user + system, steadier
on a busy machine), and their ratio to the baseline's:

- ``picpipe --version``, ``picpipe --help``;
- ``picpipe status --json`` on an initialised home with an empty library;
- a no-op ``picpipe sync --json`` (one filesystem destination, nothing to send).

    .venv/bin/python bench/startup_bench.py [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PICPIPE = str(Path(sys.executable).with_name("picpipe"))


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="picpipe-startup-") as tmp:
        home, lib, nas = Path(tmp, "home"), Path(tmp, "lib"), Path(tmp, "nas")
        nas.mkdir()
        base = [PICPIPE, "--home", str(home), "--library", str(lib)]
        subprocess.run([*base, "init"], capture_output=True, check=True)
        (home / "config.yaml").write_text(
            f"destinations:\n  nas:\n    kind: filesystem\n    path: {nas}\n"
        )
        commands = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "--version": [PICPIPE, "--version"],
            "--help": [PICPIPE, "--help"],
            "status --json": [*base, "status", "--json"],
            "sync --json (no-op)": [*base, "sync", "--json"],
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                runs[name].append(timed(cmd))
    baseline_wall = statistics.median(w for w, _ in runs["python3 -c pass"])
    baseline_cpu = statistics.median(c for _, c in runs["python3 -c pass"])
    figures = {}
    for name, samples in runs.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        figures[name] = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "wall_ratio": round(wall / baseline_wall, 1),
            "cpu_ratio": round(cpu / baseline_cpu, 1) if baseline_cpu else None,
        }
    if args.json:
        print(json.dumps({"repeat": args.repeat, "commands": figures}, indent=2))
        return
    print(f"medians of {args.repeat}; ratios to `python3 -c pass` in the same run")
    print(f"{'command':<22} {'wall':>8} {'ratio':>7} {'CPU':>8} {'ratio':>7}")
    for name, f in figures.items():
        print(
            f"{name:<22} {f['wall_s']:>7.3f}s {f['wall_ratio']:>6.1f}x "
            f"{f['cpu_s']:>7.3f}s {f['cpu_ratio'] or 0:>6.1f}x"
        )


if __name__ == "__main__":
    main()
