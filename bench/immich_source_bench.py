"""Immich source benchmark against the spec-validated fake Immich on loopback.

- Listing speed: a full listing (`ImmichSource.listing`, every page of every visibility) of an
  account holding ``--assets`` assets (default 20,000), in items per second. The fake checks
  every answer against the OpenAPI schemas, so this is a floor for a real server's side; the
  listing thread's CPU seconds (picpipe's side alone: the fake answers from its own threads)
  are shown too.
- Download throughput: the source's download of one ``--mib`` MiB original (`open`: streamed
  to its spool file, size checked; the SHA-1 is the hash stage's, in its one read) against a
  plain ``httpx`` streaming download of the same URL into a file, in the same run, rounds
  interleaved (who goes first alternates), medians of ``--repeat``, with the CPU seconds of
  the downloading thread. Target >= 0.9x.
- Unchanged poll: after a full listing, the next listing from the saved high-water mark
  (`resume(next_state(...))`): requests made to the fake and seconds.

    PYTHONPATH=. .venv/bin/python bench/immich_source_bench.py [--assets N] [--mib N]
        [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr
from tests.servers.immich import serve_immich

from picpipe.sources.base import iter_entries
from picpipe.sources.immich import ImmichSource, ImmichSourceOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with serve_immich() as server:
        fake = server.fake
        account = fake.add_user()
        options = ImmichSourceOptions(url=server.url, api_key=SecretStr(account.api_key))
        yesterday = datetime.now(UTC) - timedelta(days=1)
        for i in range(args.assets):
            stored = fake.put_asset(account.user_id, f"IMG_{i:05}.JPG", i.to_bytes(8, "big"))
            stored.updated = yesterday - timedelta(seconds=i)  # none changed since yesterday
        source = ImmichSource("bench", options)
        log(f"listing {args.assets} assets")
        calls_before = sum(fake.calls.values())
        began, cpu_began = time.perf_counter(), time.thread_time()
        entries = list(iter_entries(source))
        listing_s = time.perf_counter() - began
        # picpipe's own share: the fake answers (and spec-checks) from its own threads.
        listing_cpu = time.thread_time() - cpu_began
        listing_requests = sum(fake.calls.values()) - calls_before
        assert len(entries) == args.assets, len(entries)

        log("unchanged poll")
        source.resume(source.next_state(set()))
        calls_before = sum(fake.calls.values())
        began = time.perf_counter()
        changed = list(iter_entries(source))
        poll_s = time.perf_counter() - began
        poll_requests = sum(fake.calls.values()) - calls_before

        log(f"download throughput, {args.mib} MiB, {args.repeat} rounds")
        big = fake.put_asset(account.user_id, "BIG.MOV", os.urandom(args.mib << 20))
        entry = next(e for e in iter_entries(ImmichSource("one", options)) if e.ref == big.id)
        ours: list[float] = []
        plain: list[float] = []
        downloader = ImmichSource("round", options)
        url = f"{server.url}/api/assets/{big.id}/original"
        plain_file = os.path.join(os.path.dirname(entry.local_path or "/tmp/x"), "plain")

        cpu: dict[str, list[float]] = {"picpipe": [], "httpx": []}

        def picpipe_round() -> float:
            began, cpu_began = time.perf_counter(), time.thread_time()
            with downloader.open(entry) as stream:
                stream.read(1)
            took = time.perf_counter() - began
            cpu["picpipe"].append(time.thread_time() - cpu_began)
            downloader._spool.forget(entry.ref)  # the next round downloads again
            return took

        with httpx.Client(headers={"x-api-key": account.api_key}) as http:

            def httpx_round() -> float:
                began, cpu_began = time.perf_counter(), time.thread_time()
                with (
                    http.stream("GET", url, params={"edited": "false"}) as answer,
                    open(plain_file, "wb") as out,
                ):
                    for chunk in answer.iter_bytes(1 << 20):
                        out.write(chunk)
                took = time.perf_counter() - began
                cpu["httpx"].append(time.thread_time() - cpu_began)
                os.unlink(plain_file)
                return took

            for round_ in range(args.repeat + 1):  # round 0 warms both connections up
                # Alternate who goes first: the second may pay for the first's writeback.
                if round_ % 2:
                    a, b = picpipe_round(), httpx_round()
                else:
                    b, a = httpx_round(), picpipe_round()
                log(f"round {round_}: picpipe {a:.3f}s, httpx {b:.3f}s")
                if round_:
                    ours.append(a)
                    plain.append(b)
        downloader.close()
        source.close()
    mib = args.mib
    report: dict[str, Any] = {
        "assets": args.assets,
        "listing_seconds": round(listing_s, 3),
        "listing_items_per_s": round(args.assets / listing_s),
        "listing_requests": listing_requests,
        "listing_client_cpu_s": round(listing_cpu, 3),
        "listing_items_per_client_cpu_s": round(args.assets / listing_cpu),
        "download_mib": mib,
        "picpipe_mib_per_s": round(mib / statistics.median(ours), 1),
        "httpx_mib_per_s": round(mib / statistics.median(plain), 1),
        "download_ratio": round(statistics.median(plain) / statistics.median(ours), 3),
        # CPU seconds of the downloading thread (the fake serves from others): steadier than
        # wall time on a busy machine.
        "picpipe_cpu_s": round(statistics.median(cpu["picpipe"][1:]), 3),
        "httpx_cpu_s": round(statistics.median(cpu["httpx"][1:]), 3),
        "unchanged_poll_requests": poll_requests,
        "unchanged_poll_seconds": round(poll_s, 3),
        "unchanged_poll_entries": len(changed),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:28} {value}")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
