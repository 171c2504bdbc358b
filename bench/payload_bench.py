"""Micro-bench: what the payload hash and truncation check add to the content hash, per JPEG.

On ~12 MP JPEGs (generated once under --out), medians of --repeat rounds, from the page cache:

- sha256: the file's SHA-256 alone (`hashing.sha256_file`), what every import pays;
- sha256+walk: the same read with the streaming JPEG walk teed on it (`pipeline/jpeg_stream.py`):
  what the hash stage does now;
- payload (re-read): `payload.payload_sha256` on the path, the former second read;
- truncation (re-read): `truncation.jpeg_truncated` on the path, the former third walk.

    .venv/bin/python bench/payload_bench.py [--jpegs N] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from picpipe.hashing import sha256_file, sha256_stream
from picpipe.pipeline.jpeg_stream import JpegStreamWalk
from picpipe.pipeline.payload import payload_sha256
from picpipe.pipeline.truncation import jpeg_truncated
from picpipe.samples import make_jpeg


def photos(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"P_{i:03d}.jpg"
        if not path.exists():
            make_jpeg(path, size=(4000, 3000), seed=i, noise=48.0, quality=92)
        out.append(path)
    return out


def walked(path: Path) -> None:
    walk = JpegStreamWalk()
    with open(path, "rb", buffering=0) as stream:
        sha256_stream(stream, tee=walk.update)
    assert walk.verdict == "complete"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jpegs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    files = photos(args.out / "payload", args.jpegs)
    jobs: dict[str, Callable[[Path], object]] = {
        "sha256": sha256_file,
        "sha256+walk": walked,
        "payload (re-read)": lambda p: payload_sha256(p, "JPEG"),
        "truncation (re-read)": jpeg_truncated,
    }
    for path in files:  # warm the page cache
        sha256_file(path)
    rounds: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.repeat):
        for name, job in jobs.items():  # interleaved: the machine's noise hits all alike
            start = time.perf_counter()
            for path in files:
                job(path)
            rounds[name].append((time.perf_counter() - start) / len(files))
    ms = {name: round(statistics.median(v) * 1000, 2) for name, v in rounds.items()}
    base = ms["sha256"]
    report = {
        "files": len(files),
        "mean_bytes": sum(p.stat().st_size for p in files) // len(files),
        "ms_per_file": ms,
        "ratio_to_sha256": {name: round(v / base, 3) for name, v in ms.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{len(files)} JPEGs of ~{report['mean_bytes'] / 1e6:.1f} MB, medians of {args.repeat}")
    for name, value in ms.items():
        print(f"{name:<22} {value:>8.2f} ms  {value / base:>5.2f}x sha256")


if __name__ == "__main__":
    main()
