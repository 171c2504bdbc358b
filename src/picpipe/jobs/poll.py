"""Polled sources: one ingest of a source every ``poll_seconds`` until stopped.

For sources that cannot watch for changes (remote kinds: a Synology album, an Immich server)
`picpipe watch` runs `run_polled`, with the signature of the live runners in ``jobs/watch.py``.
Each poll is a whole ingest of the source (``picpipe import NAME`` runs the same pass once):
new files are imported, files no longer listed are marked gone (their originals stay), and an
unchanged source costs a listing. Like a watcher, the runner holds a leased "watch" run whose
progress is its status (``/watcher/status``): polls made, the last one's counts and error.

An ingest that fails for a problem of the source (unreachable, refused) is logged, kept in the
status and tried again after a backoff (1 s, doubling, at most ``poll_seconds``); a catalog
error ends the runner, which `run_live_sources` restarts with its own backoff. Stopping waits
for the ingest under way, never longer than its end.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from picpipe.catalog.runs import WATCH_KIND
from picpipe.errors import CatalogBusy, CatalogError, PicpipeError
from picpipe.jobs.runs import LeasedRun, live_source_run
from picpipe.jobs.workflows import ingest
from picpipe.sources.base import load_source_kind, poll_seconds
from picpipe.sources.configured import build_source

if TYPE_CHECKING:
    import threading
    from collections.abc import Sequence

    from picpipe.config import Settings
    from picpipe.events import EventSink
    from picpipe.pipeline.exiftool import ExifToolPool
    from picpipe.sources.base import Source

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
# Kinds always polled by `picpipe watch`, whatever their caps say (third-party kinds add theirs).
POLLED_KINDS: set[str] = set()


def pollable(kind: str) -> bool:
    """A kind `picpipe watch` polls unasked: listed in `POLLED_KINDS`, or one that cannot
    watch (no ``caps.can_watch``) whose options have ``poll_seconds``."""
    if kind in POLLED_KINDS:
        return True
    try:
        cls = load_source_kind(kind)
    except PicpipeError:
        return False
    caps = getattr(cls, "caps", None)
    fields = getattr(getattr(cls, "Options", None), "model_fields", {})
    return caps is not None and not caps.can_watch and "poll_seconds" in fields


def run_polled(
    settings: Settings,
    name: str,
    options: dict[str, Any],
    stop: threading.Event,
    /,
    *,
    sinks: Sequence[EventSink] = (),
) -> None:
    """Ingest source ``name`` every ``poll_seconds`` until ``stop`` is set (see the module).

    Raises ConfigError when the entry is not valid, CatalogError when the catalog fails.
    """
    source = build_source(settings, name, options)
    interval = poll_seconds(options)
    try:
        with live_source_run(settings, name) as (catalog, tools, run):
            _Poller(settings, source, catalog, tools, run, interval, sinks).loop(stop)
    finally:
        source.close()


class _Poller:
    def __init__(
        self,
        settings: Settings,
        source: Source,
        catalog: Any,
        tools: ExifToolPool,
        run: LeasedRun,
        interval: float,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self.sinks = list(sinks)
        self.settings = settings
        self.source = source
        self.catalog = catalog
        self.tools = tools
        self.run = run
        self.interval = interval
        self.polls = 0
        self.last_poll: dict[str, Any] | None = None
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "stage": WATCH_KIND,
            "done": self.polls,
            "total": None,
            "source": self.source.name,
            "kind": self.source.kind,
            "path": self.source.location,
            "mode": "polling",
            "why": "the source cannot watch for changes",
            "poll_seconds": self.interval,
            "polls": self.polls,
            "last_poll": self.last_poll,
            "last_error": self.last_error,
        }

    def loop(self, stop: threading.Event) -> None:
        backoff = FIRST_BACKOFF
        while not stop.is_set():
            ok = self.poll()
            self.run.set_progress(self.status())
            wait = self.interval if ok else min(backoff, self.interval)
            backoff = FIRST_BACKOFF if ok else min(backoff * 2, self.interval)
            if stop.wait(wait):
                break

    def poll(self) -> bool:
        """One ingest; False when it failed for a problem of the source (tried again after
        the backoff). A catalog error propagates."""
        started = time.monotonic()
        try:
            result = ingest(
                self.settings, self.catalog, [self.source], tools=self.tools, sinks=self.sinks
            )
        except CatalogBusy as exc:  # an `import` of this source runs now: it does the work
            log.info("%s: %s; next poll later", self.source.name, exc.message)
            return True
        except CatalogError:
            raise
        except PicpipeError as exc:
            log.error("%s: poll failed: %s", self.source.name, exc.message)
            self.last_error = exc.message
            return False
        self.polls += 1
        self.last_error = None
        summary = result.summary
        self.last_poll = {
            "session": summary.session_id,
            "new": summary.new,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "seconds": round(time.monotonic() - started, 3),
        }
        if summary.new or summary.failed:
            log.info("%s (poll): %d new, %d failed", self.source.name, summary.new, summary.failed)
        return True
