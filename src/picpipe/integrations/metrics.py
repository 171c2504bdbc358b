"""Prometheus metrics: counters fed from the event stream, gauges read from the catalog.

`EventMetrics` is an event sink: every ``ItemDone``/``ItemFailed``/``RunFinished`` of a run
in this process moves its counters and histograms (a few dictionary updates under
prometheus-client's own locks). `process_metrics()` is this process's one instance: the
service adds its sink to every run, and the web app's ``/metrics`` shows it beside
`CatalogCollector`, which reads the catalog at scrape time (so the work of another process
on the same catalog shows too), and the full-resolution cache's hit counters.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from picpipe.catalog.service_status import queue_figures
from picpipe.catalog.status import totals
from picpipe.errors import CatalogError
from picpipe.events import ItemDone, ItemFailed, Progress, RunFinished, RunStarted

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    from prometheus_client.metrics_core import Metric

    from picpipe.catalog.db import Catalog
    from picpipe.events import Event

# Seconds: a stage of a small import takes well under a second, a card's several minutes.
_STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

# An item's failure reason as an error kind, from the message templates in errors.py (the
# event carries the message a person reads, not the class).
_ERROR_KINDS = (
    ("authentication failed", "auth"),
    ("not reachable", "unavailable"),
    ("refused", "rejected"),
    ("does not match", "integrity"),
    ("no space left", "no_space"),
    ("cannot be read", "unreadable"),
    ("changed while", "changed"),
    ("disappeared", "vanished"),
    ("is empty", "empty"),
    ("another run", "busy"),
    ("thumbnail", "thumbnail"),
)


def error_kind(reason: str) -> str:
    """The kind of a failure reason (``other`` when no template matches)."""
    lowered = reason.lower()
    return next((kind for words, kind in _ERROR_KINDS if words in lowered), "other")


class EventMetrics:
    """Counters and histograms of the runs in this process, in their own registry."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self.clock = clock
        self.items = Counter(
            "picpipe_items",
            "Items finished, by run kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.item_bytes = Counter(
            "picpipe_item_bytes",
            "Bytes of the items finished, by run kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "picpipe_errors",
            "Items failed, by run kind and error kind",
            ["kind", "error"],
            registry=self.registry,
        )
        self.runs = Counter(
            "picpipe_runs",
            "Runs ended, by kind and status",
            ["kind", "status"],
            registry=self.registry,
        )
        self.active = Gauge(
            "picpipe_runs_active",
            "Runs going on in this process",
            ["kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "picpipe_queue_in_flight",
            "Items handed to workers and not yet finished",
            ["kind"],
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "picpipe_stage_duration_seconds",
            "How long each stage of a run took",
            ["kind", "stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "picpipe_run_duration_seconds", "How long each run took, by kind", ["kind"],
            buckets=_STAGE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        # run id → (kind, stage, stage started, run started)
        self._runs: dict[int, tuple[str, str, float, float]] = {}
        self._lock = threading.Lock()

    def sink(self, event: Event) -> None:
        """Move the metrics for ``event``; returns at once, never raises."""
        if isinstance(event, ItemDone):
            kind = self._kind(event.run_id)
            self.items.labels(kind, event.outcome).inc()
            if event.size:
                self.item_bytes.labels(kind, event.outcome).inc(event.size)
        elif isinstance(event, ItemFailed):
            kind = self._kind(event.run_id)
            self.items.labels(kind, "failed").inc()
            self.errors.labels(kind, error_kind(event.reason)).inc()
        elif isinstance(event, Progress):
            self._stage(event)
        elif isinstance(event, RunStarted):
            now = self.clock()
            with self._lock:
                self._runs[event.run_id] = (event.kind, event.kind, now, now)
            self.active.labels(event.kind).inc()
        elif isinstance(event, RunFinished):
            self._finished(event)

    def _kind(self, run_id: int) -> str:
        with self._lock:
            held = self._runs.get(run_id)
        return held[0] if held is not None else "unknown"

    def _stage(self, event: Progress) -> None:
        now = self.clock()
        with self._lock:
            held = self._runs.get(event.run_id)
            if held is None:
                return
            kind, stage, since, began = held
            if event.stage != stage:
                self._runs[event.run_id] = (kind, event.stage, now, began)
        self.in_flight.labels(kind).set(event.queued)
        if event.stage != stage:
            self.stage_seconds.labels(kind, stage).observe(now - since)

    def _finished(self, event: RunFinished) -> None:
        now = self.clock()
        with self._lock:
            held = self._runs.pop(event.run_id, None)
        self.runs.labels(event.kind, event.status).inc()
        if held is None:
            return
        kind, stage, since, began = held
        self.stage_seconds.labels(kind, stage).observe(now - since)
        self.run_seconds.labels(kind).observe(now - began)
        self.active.labels(kind).dec()
        self.in_flight.labels(kind).set(0)


_process: EventMetrics | None = None
_process_lock = threading.Lock()


def process_metrics() -> EventMetrics:
    """This process's `EventMetrics` (made on first use)."""
    global _process
    with _process_lock:
        if _process is None:
            _process = EventMetrics()
        return _process


class CatalogCollector:
    """What the catalog says, read at each scrape: the library, what waits, the lag."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def collect(self) -> Iterator[Metric]:
        try:
            with self.catalog.session() as db:
                figures = queue_figures(db)
                library = totals(db)
        except CatalogError:
            up = GaugeMetricFamily("picpipe_catalog_up", "The catalog answered the scrape")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("picpipe_catalog_up", "The catalog answered the scrape")
        up.add_metric([], 1)
        yield up
        files = CounterMetricFamily(
            "picpipe_catalog_files", "Files of every import session, by outcome", labels=["outcome"]
        )
        for outcome, count in figures.files_by_outcome.items():
            files.add_metric([outcome], count)
        yield files
        imported = CounterMetricFamily(
            "picpipe_catalog_imported_bytes", "Bytes of every import session"
        )
        imported.add_metric([], figures.bytes_imported)
        yield imported
        queue = GaugeMetricFamily(
            "picpipe_replicas_in_progress",
            "Replicas pending, uploading or verifying, by destination",
            labels=["destination"],
        )
        for name, count in figures.replicas_in_progress.items():
            queue.add_metric([name], count)
        yield queue
        yield _gauge("picpipe_sessions_running", "Runs marked running", figures.running_sessions)
        yield _gauge(
            "picpipe_replication_lag_seconds",
            "Age of the oldest asset without a verified copy at every destination",
            figures.oldest_unverified_seconds,
        )
        yield _gauge("picpipe_library_assets", "Assets in the library", library.assets)
        yield _gauge("picpipe_library_bytes", "Bytes of the library's originals", library.bytes)

    def describe(self) -> list[Metric]:
        return []  # not described up front: collect() would read the catalog at register


class CacheCollector:
    """The full-resolution cache's hits and misses in this process, and its hit rate."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats()
        hits, misses = int(stats.get("hits", 0)), int(stats.get("misses", 0))
        for name, value in (("hits", hits), ("misses", misses)):
            counter = CounterMetricFamily(f"picpipe_cache_{name}", f"Full-resolution cache {name}")
            counter.add_metric([], value)
            yield counter
        yield _gauge(
            "picpipe_cache_hit_ratio",
            "Hits of all lookups in the full-resolution cache (0 before the first)",
            hits / (hits + misses) if hits + misses else 0.0,
        )
        yield _gauge("picpipe_cache_bytes", "Bytes in the cache", int(stats.get("bytes", 0)))

    def describe(self) -> list[Metric]:
        return []


class Forward:
    """Another registry's metrics, collected into this one (the process's event metrics)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()

    def describe(self) -> list[Metric]:
        return []


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc)
    gauge.add_metric([], value)
    return gauge


class MetricsComponent:
    """The process metrics as a `ServiceComponent`: the service hands it every event."""

    name = "metrics"

    def __init__(self, metrics: EventMetrics | None = None) -> None:
        self.metrics = metrics or process_metrics()

    def start(self, control: object, stop: threading.Event) -> None:
        """Nothing runs in the background: ``/metrics`` reads the counters when scraped."""

    def sink(self, event: Event) -> None:
        self.metrics.sink(event)

    def refresh(self) -> None:
        """The catalog side is read at each scrape."""

    def close(self) -> None:
        """Counters live as long as the process."""


def metrics_component(settings: object = None) -> MetricsComponent:
    """The service's metrics component (its events into this process's `/metrics`)."""
    return MetricsComponent()
