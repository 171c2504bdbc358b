"""Serving benchmark: ``picpipe serve`` against nginx, with ``wrk``, on loopback, in one run.

Builds a library of generated JPEGs with thumbnails under ``--out`` (reused by later runs), then
starts, side by side:

- ``picpipe serve`` (one uvicorn worker process, the real command and configuration);
- nginx with one worker serving the same thumbnail files as static files (the baseline);
- nginx with one worker as the documented front (``docs/nginx-front.conf``): it proxies to
  ``picpipe serve``, which checks the request and answers ``X-Accel-Redirect``; nginx sends the
  file from an internal location.

and measures each with ``wrk --latency`` (1 thread, ``--connections``), medians of ``--repeat``
runs of ``--seconds``, interleaved so warm-up and noise hit every target alike: requests/s and
p99 latency for one small thumbnail (the issue's figure: target >= 0.10x nginx per worker
process; also through FastAPI's routing, to show what the fast path saves), a gallery's worth
of different small thumbnails, a full-size original, ``/files``
(random photo, medium), the gallery page and ``/api/assets?limit=100``. From the repo:

    .venv/bin/python bench/serve_bench.py [--photos N] [--repeat N] [--seconds S] [--json]

Progress goes to stderr; the table (with ``--json``, one JSON object) to stdout, and the JSON
to ``bench/out/serve_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from picpipe.catalog.db import open_catalog
from picpipe.catalog.models import Asset
from picpipe.config import load_settings
from picpipe.jobs.workflows import import_sources
from picpipe.library.layout import thumb_path
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.stages import IMPORT_STAGES
from picpipe.pipeline.thumbrun import ThumbRun, cpu_count
from picpipe.samples import make_jpeg
from picpipe.sources.folder import FolderSource

PICPIPE = str(Path(sys.executable).with_name("picpipe"))
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DATA_VERSION = 1
CORES = cpu_count()
TARGET_RATIO = 0.10
ACCEL_PREFIX = "/_picpipe/"

NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ image/jpeg jpg; image/webp webp; text/html html; }}
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    # The baseline: the thumbnail files as plain static files.
    server {{
        listen 127.0.0.1:{static_port};
        location /thumbs/ {{ root {home}; }}
        location /library/ {{ alias {library}/; }}
    }}

    # The front of docs/nginx-front.conf, stripped to what the benchmark needs.
    upstream picpipe {{ server 127.0.0.1:{app_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{front_port};
        location / {{
            proxy_pass http://picpipe;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Picpipe-Accel {accel};
            proxy_buffering off;
        }}
        location {accel} {{
            internal;
            etag off;  # the app's content-addressed ETag is kept instead of nginx's own
            add_header ETag $upstream_http_etag always;
            add_header X-Content-Type-Options nosniff always;
            add_header Referrer-Policy same-origin always;
            location {accel}thumbs/ {{ alias {home}/thumbs/; }}
            location {accel}library/ {{ alias {library}/; }}
            location {accel}cache/ {{ alias {home}/cache/full/; }}
        }}
    }}
}}
"""

# A gallery screen: every request a different small thumbnail, in a loop.
GALLERY_LUA = """
local paths = {{{paths}}}
local i = 0
request = function()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return {}


# -- data ----------------------------------------------------------------------------------------


def _taken(i: int) -> datetime:
    return datetime(2023, 1, 1, 9, 0, 0) + timedelta(days=i % 365, minutes=13 * i)


def _make(job: tuple[Path, int]) -> None:
    path, i = job
    make_jpeg(path, size=(1600, 1200), taken=_taken(i), seed=i, noise=12.0, quality=85)


def ensure_library(out: Path, photos: int) -> tuple[Path, Path]:
    """A library of ``photos`` generated JPEGs with thumbnails under ``out``; reused when complete.

    Returns (home, library).
    """
    home, library, folder = out / "home", out / "library", out / "in"
    manifest = out / "library.json"
    wanted = {"version": DATA_VERSION, "photos": photos}
    if load_json(manifest) == wanted and (home / "catalog.db").is_file():
        return home, library
    manifest.unlink(missing_ok=True)
    for path in (home, library, folder):
        shutil.rmtree(path, ignore_errors=True)
    folder.mkdir(parents=True)
    log(f"generating {photos} JPEGs of 1600x1200 and importing them (once) ...")
    files = [folder / f"IMG_{i:04d}.jpg" for i in range(photos)]
    with ProcessPoolExecutor(CORES) as pool:
        list(pool.map(_make, [(f, i) for i, f in enumerate(files)]))
    settings = load_settings(home=home, library=library, **{"import": {"fsync": False}})
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        source = FolderSource("bench", folder, settings.scan)
        import_sources(
            settings, catalog, [source], tools=tools, workers=CORES, stages=IMPORT_STAGES
        )
        ThumbRun(
            catalog, home=home, library_root=library, options=settings.thumbs, workers=CORES
        ).run()
    finally:
        tools.close()
        catalog.close()
    shutil.rmtree(folder)  # the library holds the originals now; the copies only take space
    manifest.write_text(json.dumps(wanted))
    return home, library


def asset_rows(home: Path, library: Path) -> list[tuple[str, str]]:
    """(sha256, library path) of every photo with thumbnails, in key order."""
    settings = load_settings(home=home, library=library)
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            rows = db.execute(
                select(Asset.sha256, Asset.library_path)
                .where(Asset.thumbs_state == "ok")
                .order_by(Asset.sha256)
            ).all()
    finally:
        catalog.close()
    return [(sha, path) for sha, path in rows]


# -- servers -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not answer {url} within {timeout}s")


@contextmanager
def running(
    cmd: Sequence[str], url: str, what: str, env: dict[str, str], logfile: Path
) -> Iterator[None]:
    """Run a server (its output to ``logfile``, never a pipe that could fill and stall it)."""
    log(f"starting {what} ...")
    with open(logfile, "wb") as output:
        proc = subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for(url, proc, what)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def error_lines(logfile: Path) -> int:
    """How many records at ERROR the server logged (JSON lines), for the report."""
    try:
        return sum('"level": "error"' in line for line in logfile.read_text().splitlines())
    except OSError:
        return 0


# -- wrk -----------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk latency: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, *, seconds: float, connections: int, script: Path | None = None
) -> dict[str, float]:
    """One ``wrk --latency`` run: requests/s, p50 and p99 in ms, non-2xx/3xx answers."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script is not None:
        cmd += ["-s", str(script)]
    proc = subprocess.run([*cmd, url], capture_output=True, text=True, check=True)
    text = proc.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p99,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def check(url: str, want_type: str, *, headers: dict[str, str] | None = None) -> int:
    """Fetch ``url`` once; its size in bytes (and a failure if the answer is not ``want_type``)."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = response.read()
        kind = response.headers.get("content-type", "")
        if response.status != 200 or not kind.startswith(want_type):
            raise SystemExit(f"{url}: {response.status} {kind}")
        return len(body)


# -- the run -------------------------------------------------------------------------------------


def bench(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    home, library = ensure_library(out, args.photos)
    rows = asset_rows(home, library)
    if len(rows) < 10:
        raise SystemExit("the benchmark library has fewer than 10 photos with thumbnails")
    sha, library_path = rows[len(rows) // 2]
    small = thumb_path(sha, "small")
    tmp = Path(tempfile.mkdtemp(prefix="picpipe-serve-bench-"))
    app_port, static_port, front_port = free_port(), free_port(), free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the bench folders
    (tmp / "nginx.conf").write_text(
        NGINX_CONF.format(
            user=user,
            tmp=tmp,
            home=home,
            library=library,
            app_port=app_port,
            static_port=static_port,
            front_port=front_port,
            accel=ACCEL_PREFIX,
        )
    )
    gallery = tmp / "gallery.lua"
    paths = ", ".join(f'"/api/assets/{s}/small"' for s, _ in rows)
    gallery.write_text(GALLERY_LUA.format(paths=paths))
    static_gallery = tmp / "static-gallery.lua"
    paths = ", ".join(f'"/{thumb_path(s, "small")}"' for s, _ in rows)
    static_gallery.write_text(GALLERY_LUA.format(paths=paths))

    app = f"http://127.0.0.1:{app_port}"
    static = f"http://127.0.0.1:{static_port}"
    front = f"http://127.0.0.1:{front_port}"
    targets: dict[str, tuple[str, Path | None]] = {
        "nginx static: one small thumbnail": (f"{static}/{small}", None),
        "picpipe serve: one small thumbnail": (f"{app}/api/assets/{sha}/small", None),
        "nginx front + X-Accel: one small thumbnail": (f"{front}/api/assets/{sha}/small", None),
        # Any other query parameter makes the fast path step aside: the same bytes through
        # FastAPI's routing, dependencies and response objects (what the fast path saves).
        "picpipe serve, routed: one small thumbnail": (
            f"{app}/api/assets/{sha}/small?routed=1",
            None,
        ),
        "nginx static: gallery of small thumbnails": (static, static_gallery),
        "picpipe serve: gallery of small thumbnails": (app, gallery),
        "nginx front + X-Accel: gallery of small thumbnails": (front, gallery),
        "nginx static: full-size original": (f"{static}/library/{library_path}", None),
        "picpipe serve: full-size original": (f"{app}/api/assets/{sha}/full", None),
        "nginx front + X-Accel: full-size original": (f"{front}/api/assets/{sha}/full", None),
        "picpipe serve: /files (random, medium)": (f"{app}/files", None),
        "picpipe serve: /gallery page": (f"{app}/gallery", None),
        "picpipe serve: /api/assets?limit=100": (f"{app}/api/assets?limit=100", None),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PICPIPE_")}
    serve = [
        PICPIPE,
        "--home",
        str(home),
        "--library",
        str(library),
        "serve",
        "--port",
        str(app_port),
    ]
    nginx = [NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]
    if args.only:
        targets = {k: v for k, v in targets.items() if any(o in k for o in args.only)}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    sizes: dict[str, int] = {}
    try:
        with (
            running(serve, f"{app}/health", "picpipe serve", env, tmp / "serve.log"),
            running(nginx, f"{static}/{small}", "nginx", env, tmp / "nginx.out"),
        ):
            sizes["small thumbnail"] = check(f"{static}/{small}", "image/jpeg")
            assert (
                check(f"{front}/api/assets/{sha}/small", "image/jpeg") == sizes["small thumbnail"]
            )
            sizes["full-size original"] = check(f"{front}/api/assets/{sha}/full", "image/jpeg")
            check(f"{app}/gallery", "text/html")
            log("warming up (every thumbnail once, each target briefly) ...")
            for url, script in targets.values():
                wrk(url, seconds=1, connections=args.connections, script=script)
            names = list(targets)
            for r in range(args.repeat):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    url, script = targets[name]
                    result = wrk(
                        url, seconds=args.seconds, connections=args.connections, script=script
                    )
                    results[name].append(result)
                    rps, p99 = result["rps"], result["p99_ms"]
                    log(f"  run {r + 1}: {name}: {rps:.0f} req/s, p99 {p99:.2f} ms")
        server_errors = error_lines(tmp / "serve.log")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows_out: list[dict[str, Any]] = []
    for name, runs in results.items():
        rows_out.append(
            {
                "target": name,
                "rps": statistics.median(r["rps"] for r in runs),
                "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                "non_2xx": sum(r["non_2xx"] for r in runs),
                "runs": runs,
            }
        )
    by_name = {row["target"]: row for row in rows_out}
    for row in rows_out:
        kind = row["target"].rsplit(": ", 1)[1]
        base = by_name.get(f"nginx static: {kind}")
        row["ratio_to_nginx"] = row["rps"] / base["rps"] if base else None
    main_row = by_name.get("picpipe serve: one small thumbnail")
    ratio = main_row["ratio_to_nginx"] if main_row else float("nan")
    return {
        "params": {
            "photos": args.photos,
            "repeat": args.repeat,
            "seconds": args.seconds,
            "connections": args.connections,
            "cores": CORES,
            "wrk_threads": 1,
            "nginx_workers": 1,
            "picpipe_workers": 1,
            "bytes": sizes,
            "server_errors_logged": server_errors,
            "load_average_at_end": os.getloadavg(),
        },
        "results": rows_out,
        "verdicts": [
            {
                "target": f"thumbnail requests/s >= {TARGET_RATIO:.2f}x nginx, one worker each",
                "met": ratio >= TARGET_RATIO,
                "detail": f"{ratio:.2f}x",
            }
        ],
    }


def print_report(report: dict[str, Any]) -> None:
    p = report["params"]
    print(
        f"picpipe serving benchmark: {p['cores']} cores, wrk 1 thread x {p['connections']} "
        f"connections, medians of {p['repeat']} runs of {p['seconds']}s; {p['photos']} photos; "
        f"small thumbnail {p['bytes']['small thumbnail']} B, "
        f"original {p['bytes']['full-size original']} B"
    )
    print(
        f"load average at the end {p['load_average_at_end'][0]:.1f}; "
        f"errors logged by picpipe serve: {p['server_errors_logged']}"
    )
    print(f"\n  {'target':<52} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs nginx':>9}")
    for row in report["results"]:
        ratio = f"{row['ratio_to_nginx']:.2f}x" if row["ratio_to_nginx"] is not None else ""
        print(
            f"  {row['target']:<52} {row['rps']:>9.0f} {row['p50_ms']:>8.2f} "
            f"{row['p99_ms']:>8.2f} {ratio:>9}"
        )
        if row["non_2xx"]:
            print(f"    ({row['non_2xx']:.0f} answers were not 2xx/3xx)")
    print("\nverdicts")
    for v in report["verdicts"]:
        print(f"  {v['target']}: {'met' if v['met'] else 'NOT MET'} ({v['detail']})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--photos", type=int, default=300, help="generated photos (default 300)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per median (default 3)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--only", action="append", default=[], help="targets whose name contains this (repeatable)"
    )
    args = parser.parse_args(argv)
    if min(args.photos, args.repeat, args.connections) < 1 or args.seconds <= 0:
        parser.error("counts must be at least 1")
    for tool in ("wrk", NGINX):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is missing: bash scripts/setup installs wrk and nginx-light")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = bench(args, out / "serve")
    (out / "serve_bench.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
