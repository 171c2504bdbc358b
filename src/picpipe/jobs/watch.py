"""Live sources run until stopped: watched folders and icloudpd folders (removable media join
through `LIVE_RUNNERS`).

A watched source's runner holds a leased "watch" run for as long as it watches (its progress
JSON is the watcher's status, read by `/watcher/status` in another process) and starts one
"ingest" run per settled batch: a rescan of the source gated by the settle rule, so a burst
of files, its Live Photo videos and its sidecars land in one run, and deletions are marked
gone (the library is never touched by them). The same rescan runs at start (a restart
catches up) and every ``reconcile_seconds`` (missed events). Each ingest finishes before
the runner returns: stopping never leaves a run half-done.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from picpipe.catalog.runs import WATCH_KIND
from picpipe.errors import CatalogBusy, CatalogError, ConfigError, PicpipeError
from picpipe.jobs.cards import run_removable
from picpipe.jobs.poll import pollable, run_polled
from picpipe.jobs.runs import LeasedRun, live_source_run
from picpipe.jobs.workflows import ingest
from picpipe.library.guards import refuse_own_folder
from picpipe.pipeline.runner import ImportStopped
from picpipe.redact import validation_problems
from picpipe.sources.base import load_source_kind
from picpipe.sources.watched import WatchedOptions, WatchedSource, WatchStopped

if TYPE_CHECKING:
    from collections.abc import Sequence

    from picpipe.config import Settings
    from picpipe.events import EventSink
    from picpipe.pipeline.exiftool import ExifToolPool

log = logging.getLogger(__name__)

RETRY_FIRST = 5.0  # seconds before a failed pass is tried again; doubles up to the interval


class LiveRunner(Protocol):
    """Runs one live source until ``stop`` is set; every run it starts publishes its events to
    ``sinks`` (the service's components). Raises PicpipeError for a problem it cannot wait out."""

    def __call__(
        self,
        settings: Settings,
        name: str,
        options: dict[str, Any],
        stop: threading.Event,
        /,
        *,
        sinks: Sequence[EventSink] = (),
    ) -> None: ...


def watched_source(settings: Settings, name: str, options: dict[str, Any]) -> WatchedSource:
    """The configured watched/icloudpd source ``name``; ConfigError when it is not valid."""
    kind = str(options.get("kind", "folder"))
    cls = load_source_kind(kind)
    if not (isinstance(cls, type) and issubclass(cls, WatchedSource)):
        raise ConfigError(detail=f"sources.{name}: kind {kind!r} is not a watched folder")
    try:
        parsed = WatchedOptions(**{k: v for k, v in options.items() if k != "kind"})
    except ValidationError as exc:
        problems = validation_problems(exc, prefix=f"sources.{name}.")
        raise ConfigError(detail="; ".join(problems)) from None
    folder = Path(parsed.path).expanduser()
    refuse_own_folder(settings, folder, f"sources.{name}:")
    return cls(name, folder, settings.scan, parsed)


def run_watched(
    settings: Settings,
    name: str,
    options: dict[str, Any],
    stop: threading.Event,
    /,
    *,
    sinks: Sequence[EventSink] = (),
) -> None:
    """Watch source ``name`` until ``stop`` is set; problems are logged and kept in the
    status, and the watch goes on (a folder that comes back is watched again)."""
    source = watched_source(settings, name, options)
    with live_source_run(settings, name) as (catalog, tools, run):
        _Watcher(settings, source, catalog, tools, run, sinks).loop(stop)


class _Watcher:
    def __init__(
        self,
        settings: Settings,
        source: WatchedSource,
        catalog: Any,
        tools: ExifToolPool,
        run: LeasedRun,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self.settings = settings
        self.sinks = list(sinks)
        self.source = source
        self.catalog = catalog
        self.tools = tools
        self.run = run
        self.ingests = 0
        self.last_ingest: dict[str, Any] | None = None
        self.failed_passes = 0  # in a row: a pass that failed is tried again soon

    def status(self) -> dict[str, Any]:
        state = self.source.state.as_dict()
        return {
            "stage": WATCH_KIND,
            "done": self.ingests,
            "total": None,
            "source": self.source.name,
            "kind": self.source.kind,
            "path": str(self.source.root),
            **state,
            "last_ingest": self.last_ingest,
        }

    def loop(self, stop: threading.Event) -> None:
        self.source.stopping = stop
        interval = self.source.options.reconcile_seconds
        due = time.monotonic() + interval
        inner = threading.Event()
        # The change stream runs in its own thread: the periodic reconcile must happen even
        # when no event ever comes (a network mount).
        batches: list[int] = [0]
        wake = threading.Event()

        def follow() -> None:
            for _batch in self.source.changes(inner):
                batches[0] += 1
                wake.set()

        follower = threading.Thread(target=follow, name=f"changes-{self.source.name}", daemon=True)
        follower.start()
        self.reconcile("start")  # after the watch began: nothing falls between the two
        due = self._next_due(interval, due)
        try:
            while not stop.is_set():
                self.run.set_progress(self.status())
                wake.wait(0.2)
                if stop.is_set():
                    break
                if wake.is_set():
                    wake.clear()
                    self.reconcile("changes")
                elif time.monotonic() >= due:
                    self.reconcile("periodic")
                else:
                    continue
                due = self._next_due(interval, time.monotonic() + interval)
        finally:
            inner.set()
            follower.join(timeout=5)
            self.run.set_progress(self.status())

    def _next_due(self, interval: float, due: float) -> float:
        """When the next pass runs: soon while files settle, or after a pass that failed (a
        catalog busy with three first imports at once must not cost a whole interval)."""
        now = time.monotonic()
        if self.source.settling:
            due = min(due, now + self.source.options.settle_seconds + 0.1)
        if self.failed_passes:
            due = min(due, now + min(RETRY_FIRST * 2 ** (self.failed_passes - 1), interval))
        return due

    def reconcile(self, why: str) -> None:
        """One ingest of the source (a rescan under the settle rule); never raises for a
        problem of the source, so the watch goes on."""
        try:
            result = ingest(
                self.settings,
                self.catalog,
                [self.source],
                tools=self.tools,
                sinks=self.sinks,
                stop=self.source.stopping,
            )
        except (WatchStopped, ImportStopped):
            log.info("%s: stopped during a pass; the next start catches up", self.source.name)
            return
        except CatalogBusy as exc:  # an `import` of this source runs now: it does the work
            log.info("%s: %s; next pass later", self.source.name, exc.message)
            self.failed_passes += 1
            return
        except PicpipeError as exc:
            self.failed_passes += 1
            log.error("%s: ingest failed: %s", self.source.name, exc.message)
            with self.source.state.lock:
                self.source.state.last_error = exc.message
            return
        self.failed_passes = 0
        self.ingests += 1
        summary = result.summary
        self.last_ingest = {
            "why": why,
            "session": summary.session_id,
            "new": summary.new,
            "failed": summary.failed,
            "skipped": summary.skipped,
        }
        if summary.new or summary.failed:
            log.info(
                "%s (%s): %d new, %d failed", self.source.name, why, summary.new, summary.failed
            )


LIVE_RUNNERS: dict[str, LiveRunner] = {
    "watched": run_watched,
    "icloudpd": run_watched,
    "removable": run_removable,
}


def live_runner(options: dict[str, Any]) -> LiveRunner | None:
    """The runner `picpipe watch` uses for a source entry unasked: its kind's live runner, or
    `run_polled` for a kind that can only be polled (`jobs/poll.py` `pollable`)."""
    kind = str(options.get("kind", "folder"))
    if kind in LIVE_RUNNERS:
        return LIVE_RUNNERS[kind]
    return run_polled if pollable(kind) else None


def run_live_sources(
    settings: Settings,
    names: list[str],
    stop: threading.Event,
    *,
    sinks: Sequence[EventSink] = (),
    errors: dict[str, str | None] | None = None,
    persistent: bool = False,
) -> dict[str, str | None]:
    """Run each named live source in its own thread until ``stop``; one source's failure
    never stops the others. Returns each source's error (None when it ended cleanly).

    ``errors`` (when given) is filled as the sources run, so a status page can show a
    source's last error while it restarts. ``persistent`` (the service) restarts a source
    after any error but a config error, with backoff up to five minutes."""
    configured = settings.sources
    chosen = names or [n for n, o in configured.items() if live_runner(o) is not None]
    if not chosen:
        raise ConfigError(
            detail="no live sources configured (kind: watched, icloudpd or removable, or a "
            "kind that is polled)"
        )
    runners: dict[str, LiveRunner] = {}
    for name in chosen:
        if name not in configured:
            raise ConfigError(detail=f"{name}: no source of that name in the config")
        kind = str(configured[name].get("kind", "folder"))
        # A source named on the command line that no runner watches (a folder on a network
        # share) is polled every poll_seconds.
        runner = live_runner(configured[name]) or (run_polled if kind != "removable" else None)
        if runner is None:
            raise ConfigError(detail=f"sources.{name}: kind {kind!r} cannot be watched")
        runners[name] = runner
    if errors is None:
        errors = {}
    errors.update(dict.fromkeys(runners))
    longest = 300.0 if persistent else 30.0

    def one(name: str, runner: LiveRunner) -> None:
        delay = 1.0
        try:
            while True:
                try:
                    runner(settings, name, configured[name], stop, sinks=sinks)
                    errors[name] = None  # ended cleanly (after a restart, too)
                    return
                except Exception as exc:
                    # A catalog that is busy or away for a while (SQLite locked by another
                    # writer, a PostgreSQL failover) restarts the source with backoff; a
                    # problem of the source's own config ends it. The service restarts
                    # after anything else too: one source's bug must not end its watch.
                    if isinstance(exc, ConfigError) or stop.is_set():
                        raise
                    wait_out = isinstance(exc, CatalogError) or (
                        isinstance(exc, PicpipeError) and exc.retryable
                    )
                    if not (wait_out or persistent):
                        raise
                    why = exc.message if isinstance(exc, PicpipeError) else repr(exc)
                    errors[name] = why
                    log.error("%s: %s; restarting in %.0f s", name, why, delay)
                    if stop.wait(delay):
                        return
                    delay = min(delay * 2, longest)
        except PicpipeError as exc:
            errors[name] = exc.message
            log.error("%s: %s", name, exc.message)
        except Exception as exc:  # one source's bug must not stop the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            log.exception("%s stopped", name)

    threads = [
        threading.Thread(target=one, args=(n, r), name=f"live-{n}") for n, r in runners.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
