"""Synology source figures against the fake NAS on loopback (a separate process, uvicorn).

- listing: the first listing of one album of N items (default 20,000: four pages of 5,000),
  login and album lookup included, in items/s;
- download: the client's streaming download of one big original to a temp file, against a
  plain ``httpx`` streaming POST of the same bytes in the same session, rounds interleaved;
  the ratio (target >= 0.9x);
- unchanged poll: a second listing of the same album, nothing changed: HTTP requests made and
  seconds (what each ``poll_seconds`` costs the NAS before the catalog's unchanged check);
- unchanged import: ``import_sources`` of a smaller album (``--poll-items``, real JPEGs) into a
  fresh library, then again with nothing changed: requests and seconds of the second pass
  (listing, catalog unchanged check, album membership; no download).

From the repo: ``.venv/bin/python bench/synology_bench.py [--items N] [--mb N] [--rounds N]
[--json]``. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picpipe.samples import make_jpeg  # noqa: E402
from picpipe.sources.base import iter_entries  # noqa: E402
from picpipe.sources.synology import SynologyOptions, SynologySource  # noqa: E402

ALBUM = "kitchen-dash"


def serve(items: int, mb: int, poll_items: int) -> None:
    """The child process: the fake NAS with the album and one big original, on loopback."""
    from tests.fakes.synology import FakeSynology, serve_in_thread

    fake = FakeSynology()
    album = fake.add_album(ALBUM)
    for n in range(items):
        fake.add_item(album, f"IMG_{n:05}.JPG", b"\xff\xd8" + b"x" * 200, 1_700_000_000 + n)
    big = fake.add_item(fake.add_album("big"), "BIG.JPG", bytes(range(256)) * (mb * 4096))
    poll = fake.add_album("poll")
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(poll_items):
            path = Path(tmp) / f"P_{n:05}.JPG"
            make_jpeg(path, size=(320, 240), seed=n)
            fake.add_item(poll, path.name, path.read_bytes(), 1_700_000_000 + n)
    with serve_in_thread(fake) as url:
        print(json.dumps({"url": url, "big": big.id}), flush=True)
        sys.stdin.read()  # until the parent closes the pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--poll-items", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.items, args.mb, args.poll_items)
        return
    sizes = ["--items", str(args.items), "--mb", str(args.mb), "--poll-items", str(args.poll_items)]
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", *sizes],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        hello = json.loads(child.stdout.readline())
        report = measure(hello["url"], args.rounds)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")


def measure(url: str, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        options = {"url": url, "username": "frame", "password": "s3cret", "albums": [ALBUM]}
        source = SynologySource(
            "bench", SynologyOptions.model_validate(options), home=Path(tmp) / "home"
        )
        started = time.perf_counter()
        listed = sum(1 for _ in iter_entries(source))
        list_seconds = time.perf_counter() - started
        print(f"listed {listed} items in {list_seconds:.2f}s", file=sys.stderr)
        before = source.client.requests
        started = time.perf_counter()
        again = sum(1 for _ in iter_entries(source))
        poll_seconds = time.perf_counter() - started
        poll_requests = source.client.requests - before
        assert again == listed
        client_rates, plain_rates = download_rounds(source, Path(tmp), rounds)
        source.close()
        unchanged = unchanged_import(url, Path(tmp))
    ratio = statistics.median(client_rates) / statistics.median(plain_rates)
    return {
        "items": listed,
        "listing_seconds": round(list_seconds, 3),
        "listing_items_per_s": round(listed / list_seconds),
        "unchanged_poll_requests": poll_requests,
        "unchanged_poll_seconds": round(poll_seconds, 3),
        "download_client_mb_per_s": round(statistics.median(client_rates), 1),
        "download_plain_httpx_mb_per_s": round(statistics.median(plain_rates), 1),
        "download_ratio": round(ratio, 3),
        # The machine is shared: the best round of each is the least disturbed one.
        "download_client_best_mb_per_s": round(max(client_rates), 1),
        "download_plain_httpx_best_mb_per_s": round(max(plain_rates), 1),
        "download_ratio_best": round(max(client_rates) / max(plain_rates), 3),
        **unchanged,
    }


def unchanged_import(url: str, tmp: Path) -> dict[str, Any]:
    """First import of the "poll" album into a fresh library, then the unchanged one."""
    from picpipe.catalog.db import open_catalog
    from picpipe.config import load_settings
    from picpipe.jobs.workflows import import_sources
    from picpipe.pipeline.exiftool import ExifToolPool

    settings = load_settings(home=tmp / "home", library=tmp / "library")
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    options = {"url": url, "username": "frame", "password": "s3cret", "albums": ["poll"]}
    source = SynologySource(
        "poll", SynologyOptions.model_validate(options), home=settings.home_root
    )
    try:
        started = time.perf_counter()
        first = import_sources(settings, catalog, [source], tools=tools)
        first_seconds = time.perf_counter() - started
        print(f"first import: {first.new} new in {first_seconds:.1f}s", file=sys.stderr)
        before = source.client.requests
        started = time.perf_counter()
        again = import_sources(settings, catalog, [source], tools=tools)
        seconds = time.perf_counter() - started
        requests = source.client.requests - before  # before close(): its logout is one more
        assert again.unchanged == first.new, again
    finally:
        source.close()
        tools.close()
        catalog.close()
    return {
        "import_items": first.new,
        "first_import_seconds": round(first_seconds, 2),
        "unchanged_import_requests": requests,
        "unchanged_import_seconds": round(seconds, 3),
    }


def download_rounds(
    source: SynologySource, tmp: Path, rounds: int
) -> tuple[list[float], list[float]]:
    client = source.client
    big = next(a for a in client.albums() if a.name == "big")
    item = next(iter(client.items(_scope(big.id))))
    client.login()
    sid = client._sid  # the same session for the plain download: only the code path differs
    form = {
        "api": "SYNO.Foto.Download",
        "method": "download",
        "version": "2",
        "unit_id": json.dumps([item.id]),
        "cache_key": item.cache_key,
        "_sid": str(sid),
    }
    client_rates: list[float] = []
    plain_rates: list[float] = []
    base = str(client._http.base_url)
    with httpx.Client(base_url=base, timeout=60) as plain:
        for n in range(rounds):
            for which in ("client", "plain") if n % 2 == 0 else ("plain", "client"):
                target = tmp / f"{which}.bin"
                started = time.perf_counter()
                with open(target, "wb") as out:
                    if which == "client":
                        size = client.download(item, out).size
                    else:
                        size = 0
                        with plain.stream("POST", "entry.cgi", data=form) as answer:
                            for chunk in answer.iter_raw(1024 * 1024):
                                out.write(chunk)
                                size += len(chunk)
                seconds = time.perf_counter() - started
                rate = size / seconds / 1e6
                (client_rates if which == "client" else plain_rates).append(rate)
                print(f"round {n} {which}: {rate:.0f} MB/s", file=sys.stderr)
    return client_rates, plain_rates


def _scope(album_id: int) -> Any:
    from picpipe.clients.synology_models import ItemScope

    return ItemScope(album_id=album_id)


if __name__ == "__main__":
    main()
