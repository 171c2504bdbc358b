"""The named workflows, defined once: "ingest" and "thumbnails" (replication is `SyncRun`).

ingest = scan → hash → dedupe → metadata → place → sidecar (the import stages), the pairs of
the session, the sidecar re-import of edits made in other tools, the thumbnails of what is
pending (in their process pool) and the consumers (views, Immich's external library), all in
one leased run per set of sources. The CLI calls these
today; the service and SD-card sessions call them next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from picpipe.catalog.source_albums import record_source_albums
from picpipe.errors import PicpipeError
from picpipe.events import ItemDone, ItemFailed, Progress
from picpipe.integrations.consumers import after_ingest
from picpipe.jobs.runs import LeasedRun
from picpipe.jobs.worker import LocalWorkerPool
from picpipe.library.cache import CacheSink
from picpipe.library.marker import ensure_library, refuse_missing_library
from picpipe.library.staging import staged_write, staging_root
from picpipe.library.writer import check_writable
from picpipe.pipeline.runner import ImportRun, SessionSummary, build_context, run_stages
from picpipe.pipeline.sidecar_sync import reimport_changed_sidecars
from picpipe.pipeline.stages import import_stages
from picpipe.pipeline.thumbrun import Selection, ThumbRun, ThumbSummary

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence
    from pathlib import Path

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.events import EventSink
    from picpipe.pipeline.exiftool import ExifToolPool
    from picpipe.pipeline.stages import Stage
    from picpipe.pipeline.task import ImportTask
    from picpipe.sources.base import AlbumSource, Source

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an ingest did: the import session, the sidecar re-import, the thumbnails."""

    summary: SessionSummary
    sidecars: dict[str, Any]
    thumbs: dict[str, Any] | None
    consumers: dict[str, Any] | None = None  # views and Immich's external library, when set

    def as_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"sidecars": self.sidecars}
        if self.consumers:
            extra["consumers"] = self.consumers
        if self.thumbs is not None:  # the thumbnail failures are listed by `picpipe thumbs`
            extra["thumbs"] = {k: v for k, v in self.thumbs.items() if not k.startswith("_")}
        return self.summary.as_dict() | extra


def import_keys(sources: Sequence[Source]) -> list[str]:
    """One import of a source at a time, on every machine sharing the catalog."""
    return [f"import:{source.name}" for source in sources]


def _import_lease(
    settings: Settings, catalog: Catalog, sources: Sequence[Source], sinks: Sequence[EventSink]
) -> LeasedRun:
    return LeasedRun(
        catalog,
        kind="import",
        device=", ".join(source.name for source in sources),
        keys=import_keys(sources),
        options=settings.runs,
        library_root=settings.library_root,
        sinks=sinks,
    )


def import_sources(
    settings: Settings,
    catalog: Catalog,
    sources: Sequence[Source],
    *,
    tools: ExifToolPool,
    sinks: Sequence[EventSink] = (),
    workers: int | None = None,
    move: bool = False,
    stages: Sequence[Stage] | None = None,
    stop: threading.Event | None = None,
) -> SessionSummary:
    """The import part of ingest: ``sources`` through the stages in one leased run.

    Raises CatalogBusy when another live run imports one of the sources, LibraryError when
    the library cannot be written, CatalogError when the catalog fails under the run (no
    file is then recorded as failed). Item failures are in the summary.
    """
    ensure_library(settings.library_root, catalog)
    check_writable(settings.library_root)
    with _import_lease(settings, catalog, sources, sinks) as run:
        return _import_in(run, settings, catalog, sources, tools, workers, move, stages, stop)


def _import_in(
    run: LeasedRun,
    settings: Settings,
    catalog: Catalog,
    sources: Sequence[Source],
    tools: ExifToolPool,
    workers: int | None,
    move: bool,
    stages: Sequence[Stage] | None,
    stop: threading.Event | None = None,
) -> SessionSummary:
    ctx = build_context(settings, catalog, tools)
    ctx.run_id = run.id
    chosen = tuple(stages) if stages is not None else import_stages(settings)

    def work(task: ImportTask) -> ImportTask:
        return run_stages(ctx, task, chosen)

    # One pool for the whole run: its threads (and their exiftool processes) are reused from
    # one source to the next.
    pool: LocalWorkerPool[ImportTask, ImportTask] = LocalWorkerPool(
        work, workers=workers or settings.workers
    )
    try:
        summary = ImportRun(ctx, run, pool, move=move, stages=chosen, stop=stop).run(sources)
    finally:
        pool.shutdown(cancel=True)
    _record_albums(catalog, sources)
    return summary


def _record_albums(catalog: Catalog, sources: Sequence[Source]) -> None:
    """Album membership as the sources' listings saw it (Synology albums → picpipe albums)."""
    for source in sources:
        if not source.caps.albums:
            continue
        albums = cast("AlbumSource", source).album_members()
        if albums:
            with catalog.write() as db:
                count = record_source_albums(db, source.name, albums)
            log.info("source %s: %d album member(s) recorded", source.name, count)


def ingest(
    settings: Settings,
    catalog: Catalog,
    sources: Sequence[Source],
    *,
    tools: ExifToolPool,
    sinks: Sequence[EventSink] = (),
    workers: int | None = None,
    move: bool = False,
    thumbnails: bool = True,
    stop: threading.Event | None = None,
) -> IngestResult:
    """Import ``sources``, then the session's follow-up work — the sidecar re-import and the
    pending thumbnails — in the same leased run (one run row and one event stream per
    ingest). Raises as `import_sources` does, and ImportStopped (a KeyboardInterrupt) when
    ``stop`` is set between files; thumbnails stop starting once it is set."""
    ensure_library(settings.library_root, catalog)
    check_writable(settings.library_root)
    with _import_lease(settings, catalog, sources, sinks) as run:
        summary = _import_in(run, settings, catalog, sources, tools, workers, move, None, stop)
        # Edits made in digiKam and friends since the last run come back with every import.
        sidecars = reimport_changed_sidecars(settings, catalog, tools=tools).as_dict()
        thumbs: dict[str, Any] | None = None
        if thumbnails and settings.thumbs.on_import:
            thumbs = _pending_thumbnails(settings, catalog, run, stop)
        # Views and Immich's external library follow every ingest (when configured).
        consumers = after_ingest(settings, added=summary.new)
    return IngestResult(summary, sidecars, thumbs, consumers)


def _pending_thumbnails(
    settings: Settings, catalog: Catalog, run: LeasedRun, stop: threading.Event | None
) -> dict[str, Any]:
    """Thumbnails for every asset still pending; a problem is reported, not raised: the
    originals are safe and each asset's state says why it has none. Thumbnail writes are
    atomic and idempotent, so two ingests making some of the same ones at once is harmless."""
    try:
        result = _make_thumbnails(run, settings, catalog, "pending", None, stop)
    except PicpipeError as exc:
        log.warning("no thumbnails were made: %s", exc.message)
        return {"made": 0, "failed": 0, "error": exc.message}
    return {"made": result.made, "failed": result.failed, "_failures": result.failures}


def thumbnails_run(
    settings: Settings,
    catalog: Catalog,
    selection: Selection,
    *,
    workers: int | None = None,
    sinks: Sequence[EventSink] = (),
) -> ThumbSummary:
    """Make the ``selection``'s thumbnails in a leased "thumbs" run (one at a time per
    catalog); the process pool's progress is published as the run's events. Raises
    LibraryMissing when the library is not there (an unmounted NAS)."""
    refuse_missing_library(settings.library_root, catalog)
    with LeasedRun(
        catalog,
        kind="thumbs",
        device=selection,
        keys=["thumbs"],
        options=settings.runs,
        sinks=sinks,
    ) as run:
        summary = _make_thumbnails(run, settings, catalog, selection, workers)
        run.report = summary.report()
        run.status = "completed_with_failures" if summary.failed else "completed"
    return summary


def _make_thumbnails(
    run: LeasedRun,
    settings: Settings,
    catalog: Catalog,
    selection: Selection,
    workers: int | None,
    stop: threading.Event | None = None,
) -> ThumbSummary:
    seen = [0, 0]

    def progress(summary: ThumbSummary, total: int) -> None:
        run.publish(Progress(run.id, "thumbnails", summary.made + summary.failed, total))
        for failure in summary.failures[seen[1] :]:
            run.publish(ItemFailed(run.id, failure["path"], failure["reason"]))
        for _ in range(summary.made - seen[0]):
            run.publish(ItemDone(run.id, "", "made", 0))
        seen[0], seen[1] = summary.made, len(summary.failures)

    restage = Restager(settings, catalog)
    thumbs = ThumbRun(
        catalog,
        home=settings.home_root,
        library_root=settings.library_root,
        options=settings.thumbs,
        workers=workers,
        progress=progress,
        stop=stop,
        restage=restage,
    )
    try:
        summary = thumbs.run(selection)
    finally:
        restage.close()
    summary.run_id = run.id
    return summary


class Restager:
    """An index-only original whose staged copy is gone, fetched again from a replica or its
    source (SHA-256 checked, `web/origins.py`) into the staging folder; None when none can
    give it (logged)."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        from picpipe.web.origins import Origins

        self.catalog = catalog
        self.root = staging_root(settings.home_root)
        self.origins = Origins(settings, catalog)

    def __call__(self, sha256: str) -> Path | None:
        from picpipe.web.origins import asset_facts

        facts = asset_facts(self.catalog, sha256)
        if facts is None:
            return None
        with staged_write(self.root) as staged:
            try:
                self.origins.producer(facts)(CacheSink(staged.handle, facts.size))
            except PicpipeError as exc:
                log.warning("%s: not staged again: %s", sha256[:12], exc.message)
                return None
            return staged.keep(sha256, facts.library_path)

    def close(self) -> None:
        self.origins.close()
