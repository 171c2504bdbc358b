"""MQTT + metrics overhead on an import: the same 2,000 files imported with and without the
Home Assistant publisher and the Prometheus event metrics as sinks of the run.

Each round imports the files twice into fresh libraries, once with no sinks ("without") and
once with ``MqttPublisher.sink`` and ``EventMetrics.sink`` on the run's event stream
("with"), alternating which goes first; the figure is the median wall time of each, and the
time spent inside the two sinks (measured around each call), and the process's CPU time
(every thread, the publisher's own included; exiftool runs in child processes). Target:
<= 3 % overhead. The publisher talks to a real broker (127.0.0.1:1883 by default) under
unique prefixes, which the bench clears afterwards. From the repo:

    .venv/bin/python bench/mqtt_overhead_bench.py [--files 2000] [--rounds 3] [--workers N]
        [--broker HOST:PORT] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from picpipe.catalog.db import open_catalog
from picpipe.config import MqttOptions, load_settings
from picpipe.events import Event, EventSink
from picpipe.integrations.metrics import EventMetrics
from picpipe.jobs.workflows import import_sources
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.samples import make_jpeg
from picpipe.service.mqtt import MqttPublisher
from picpipe.sources.folder import FolderSource

TARGET = 0.03


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_files(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    start = datetime(2024, 5, 1, 8, 0, 0)
    for i in range(have, count):
        make_jpeg(
            folder / f"IMG_{i:05d}.jpg", size=(320, 240), taken=start + timedelta(minutes=i), seed=i
        )
    log(f"{count} files in {folder}")


class TimedSinks:
    """The sinks, with the time spent inside them (what the run pays for them)."""

    def __init__(self, sinks: list[EventSink]) -> None:
        self.sinks = sinks
        self.seconds = 0.0
        self.events = 0

    def __call__(self, event: Event) -> None:
        started = time.perf_counter()
        for sink in self.sinks:
            sink(event)
        self.seconds += time.perf_counter() - started
        self.events += 1


class Control:
    def request(self, command: str) -> None:
        pass

    def status_word(self) -> str:
        return "idle"


def cpu_seconds() -> float:
    """This process's CPU time (user + system), every thread: the publisher's included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def import_once(
    work: Path, files: Path, workers: int, mqtt: MqttOptions | None
) -> tuple[float, TimedSinks | None, float]:
    """One import into a fresh library; with ``mqtt``, the publisher (on the same catalog,
    as in the service) and the event metrics are the run's sinks."""
    home = work / f"run-{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        home=home / "home", library=home / "library", **{"import": {"fsync": False}}
    )
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    publisher: MqttPublisher | None = None
    timed: TimedSinks | None = None
    try:
        if mqtt is not None:
            publisher = MqttPublisher(settings.model_copy(update={"mqtt": mqtt}), mqtt)
            publisher.start(Control(), threading.Event())  # type: ignore[arg-type]
            if not publisher.link.wait_connected(5):
                log("no broker: the publisher runs disconnected")
            # In the service the publisher has long sent its discovery when a run begins.
            time.sleep(1.5)
            timed = TimedSinks([publisher.sink, EventMetrics().sink])
        source = FolderSource("camera", files, settings.scan)
        started, cpu = time.perf_counter(), cpu_seconds()
        summary = import_sources(
            settings, catalog, [source], tools=tools, sinks=[timed] if timed else [],
            workers=workers,
        )  # fmt: skip
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        assert summary.new == len(list(files.glob("*.jpg"))), summary.as_dict()
        return seconds, timed, cpu
    finally:
        if publisher is not None:
            publisher.close()
        tools.close()
        catalog.close()
        shutil.rmtree(home, ignore_errors=True)


def clear_retained(host: str, port: int, *prefixes: str) -> None:
    seen: set[str] = set()
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.on_message = lambda _c, _u, m: seen.add(m.topic) if m.retain else None
    client.connect(host, port)
    client.loop_start()
    for prefix in prefixes:
        client.subscribe(f"{prefix}/#")
    time.sleep(1.0)
    for topic in seen:
        client.publish(topic, b"", retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--broker", default="127.0.0.1:1883")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "picpipe-mqtt-bench"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    host, _, port = args.broker.partition(":")
    files = args.out / f"files-{args.files}"
    ensure_files(files, args.files)
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)

    unique = uuid.uuid4().hex[:8]
    options = MqttOptions(host=host, port=int(port or 1883), topic_prefix=f"bench_{unique}",
                          discovery_prefix=f"habench_{unique}")  # fmt: skip

    without: list[float] = []
    with_sinks: list[float] = []
    sink_seconds: list[float] = []
    cpu_without: list[float] = []
    cpu_with: list[float] = []
    events = 0
    import_once(work, files, args.workers, None)  # warm-up: page cache, exiftool, imports
    try:
        for round_no in range(args.rounds):
            order = ("without", "with") if round_no % 2 == 0 else ("with", "without")
            for which in order:
                if which == "without":
                    took, _none, cpu = import_once(work, files, args.workers, None)
                    without.append(took)
                    cpu_without.append(cpu)
                else:
                    took, timed, cpu = import_once(work, files, args.workers, options)
                    assert timed is not None
                    with_sinks.append(took)
                    cpu_with.append(cpu)
                    sink_seconds.append(timed.seconds)
                    events = timed.events
                log(f"round {round_no + 1} {which}: {took:.2f} s")
    finally:
        clear_retained(options.host, options.port, options.topic_prefix, options.discovery_prefix)
        shutil.rmtree(work, ignore_errors=True)

    base, loaded = statistics.median(without), statistics.median(with_sinks)
    in_sinks = statistics.median(sink_seconds)
    wall = (loaded - base) / base
    inside = in_sinks / base
    cpu_base, cpu_loaded = statistics.median(cpu_without), statistics.median(cpu_with)
    cpu_overhead = (cpu_loaded - cpu_base) / cpu_base
    report: dict[str, Any] = {
        "files": args.files,
        "rounds": args.rounds,
        "workers": args.workers,
        "events_per_import": events,
        "import_without_s": round(base, 3),
        "import_with_s": round(loaded, 3),
        "wall_overhead": round(wall, 4),
        "sink_seconds": round(in_sinks, 4),
        "sink_overhead": round(inside, 5),
        "sink_us_per_event": round(in_sinks / max(events, 1) * 1e6, 2),
        "cpu_without_s": round(cpu_base, 3),
        "cpu_with_s": round(cpu_loaded, 3),
        "cpu_overhead": round(cpu_overhead, 4),
        "target": TARGET,
        "met": inside <= TARGET and wall <= TARGET,
        "runs_without_s": [round(x, 3) for x in without],
        "runs_with_s": [round(x, 3) for x in with_sinks],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"import of {args.files} files, median of {args.rounds} rounds, {args.workers} workers"
        )
        print(f"  without MQTT + metrics  {base:8.2f} s   (baseline)")
        print(f"  with MQTT + metrics     {loaded:8.2f} s   {wall:+.1%} wall time")
        print(f"  inside the sinks        {in_sinks:8.4f} s   {inside:.3%} of the import "
              f"({report['sink_us_per_event']} µs per event, {events} events)")  # fmt: skip
        print(
            f"  process CPU             {cpu_base:8.2f} s -> {cpu_loaded:.2f} s {cpu_overhead:+.1%}"
        )
        print(f"  target <= {TARGET:.0%}: {'met' if report['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
