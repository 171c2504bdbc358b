"""The service's jobs, each one run: sync (replicate to every destination), reconcile (ingest
every source), scrub (verify the library). The same functions make `picpipe start --once`.

Every job publishes its runs' events to ``sinks`` and honours ``stop`` between files, so a
stopping service ends a job within a few seconds and the next job resumes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from picpipe.destinations.base import Destination, open_destination
from picpipe.jobs.catalog_backup import snapshot_catalog
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.workflows import ingest
from picpipe.library.guards import refuse_destination_in_library
from picpipe.library.marker import refuse_missing_library
from picpipe.library.verify import verify_library
from picpipe.sources.configured import configured_source, importable_names

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.events import EventSink
    from picpipe.jobs.sync_report import SyncReport
    from picpipe.jobs.workflows import IngestResult
    from picpipe.library.verify import VerifyReport
    from picpipe.pipeline.exiftool import ExifToolPool

log = logging.getLogger(__name__)

Job = Literal["sync", "reconcile", "scrub"]
JOBS: tuple[Job, ...] = ("sync", "reconcile", "scrub")


@dataclass(slots=True)
class JobOutcome:
    """What one job did, for the service's status and `start --once`'s report."""

    job: Job
    ok: bool
    report: dict[str, Any] = field(default_factory=dict)
    failed_items: int = 0
    unreachable: dict[str, str] = field(default_factory=dict)  # destination → why
    error: str | None = None


def open_destinations(settings: Settings, only: Sequence[str] = ()) -> dict[str, Destination]:
    """The configured destinations (``only`` some), each validated; ConfigError for bad ones."""
    names = list(only) or list(settings.destinations)
    opened: dict[str, Destination] = {}
    try:
        for name in names:
            options = dict(settings.destinations[name])
            if str(options.get("kind", "")) == "filesystem" and options.get("path"):
                refuse_destination_in_library(settings, name, Path(str(options["path"])))
            opened[name] = open_destination(name, options)
    except BaseException:
        for backend in opened.values():
            backend.close()
        raise
    return opened


def sync_destinations(
    settings: Settings,
    catalog: Catalog,
    *,
    sinks: Sequence[EventSink],
    stop: threading.Event,
    only: Sequence[str] = (),
) -> SyncReport | None:
    """One sync to every destination (``only`` some): uploads verified at the far end, then
    the catalog snapshot. None when no destination is configured. An unreachable destination
    is in the report's ``unreachable``; the others were synced."""
    if not settings.destinations:
        return None
    refuse_missing_library(settings.library_root, catalog)
    backends = open_destinations(settings, only)
    replicas = settings.replicas
    try:
        run = SyncRun(
            catalog,
            settings.library_root,
            backends,
            policy=RetryPolicy(replicas.retries, replicas.backoff_base, replicas.backoff_max),
            concurrency={
                name: int(settings.destinations[name].get("concurrency") or replicas.concurrency)
                for name in backends
            },
            sinks=sinks,
            stop=stop,
            runs=settings.runs,
            sidecar_naming=settings.sidecars.naming,
        )
        report = run.run()
        if not stop.is_set():
            reachable = {n: b for n, b in backends.items() if n not in report.unreachable}
            snapshot_catalog(
                catalog,
                reachable,
                keep=replicas.catalog_snapshots,
                policy=run.policy,
                report=report,
                stop=stop,
                workdir=settings.home_root,
            )
    finally:
        for backend in backends.values():
            backend.close()
    return report


def ingest_all(
    settings: Settings,
    catalog: Catalog,
    *,
    tools: ExifToolPool,
    sinks: Sequence[EventSink],
    stop: threading.Event,
) -> IngestResult | None:
    """One ingest of every configured source but cards (a rescan: unchanged folders cost one
    listing); None when no source is configured. Raises ImportStopped when stopped."""
    names = importable_names(settings)
    if not names:
        return None
    sources = [configured_source(settings, name, settings.sources[name]) for name in names]
    return ingest(settings, catalog, sources, tools=tools, sinks=sinks, stop=stop)


def scrub_library(settings: Settings, catalog: Catalog) -> VerifyReport:
    """Re-hash every original against the catalog (reads only)."""
    return verify_library(catalog, settings.library_root, workers=max(1, settings.workers // 2))
