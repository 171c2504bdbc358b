"""`picpipe start`: one process running the live sources, the scheduled jobs, the web server
and the components (MQTT...), held as a leased "service" run in the catalog.

Threads: one per live source (`run_live_sources`, restarted with backoff after an error),
one worker running the queued jobs one at a time (sync, reconcile, scrub), the web server
(uvicorn), and the main thread, which renews the service's status (its run's progress JSON,
read by `picpipe status` in another process), pings systemd's watchdog and queues the jobs
that fell due. Every run started here publishes its events to one fan-out: the status
tracker, the service's own hooks (a sync after an import that added photos) and every
component's sink. ``stop`` ends it all: imports end between files, syncs between uploads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from picpipe.catalog.db import open_catalog
from picpipe.errors import CatalogBusy, PicpipeError
from picpipe.events import RunFinished
from picpipe.jobs.runs import LeasedRun
from picpipe.jobs.watch import LIVE_RUNNERS, run_live_sources
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.pipeline.runner import ImportStopped
from picpipe.service.scheduler import JobQueue, QueuedJob, Scheduler
from picpipe.service.status import StatusTracker
from picpipe.service.work import JobOutcome, ingest_all, scrub_library, sync_destinations
from picpipe.sources.watched import WatchStopped

if TYPE_CHECKING:
    from collections.abc import Sequence

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.events import Event
    from picpipe.service.component import Command, ServiceComponent
    from picpipe.service.notify import Notifier
    from picpipe.service.web import WebThread

log = logging.getLogger(__name__)

SERVICE_KIND = "service"
TICK = 0.5  # seconds between the main loop's looks (status, due jobs, watchdog)
SAVE_EVERY = 2.0  # seconds: the fastest the service's changing status is written


class PicpipeService:
    """The long-running service; `run` blocks until ``stop`` is set (see the module doc)."""

    def __init__(
        self,
        settings: Settings,
        *,
        stop: threading.Event,
        components: Sequence[ServiceComponent] = (),
        notifier: Notifier,
        web: WebThread | None = None,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.components = list(components)
        self.notifier = notifier
        self.web = web
        self.tracker = StatusTracker()
        self.queue = JobQueue()
        self.scheduler = Scheduler(settings.schedule)
        self.source_errors: dict[str, str | None] = {}
        self.destination_errors: dict[str, str] = {}
        self.job_errors: dict[str, str] = {}
        self.current_job: str | None = None
        self.jobs_done = 0
        self._threads: list[threading.Thread] = []
        self._refresh_due = 0.0

    # -- ServiceControl ----------------------------------------------------------------------

    def request(self, command: Command) -> None:
        """Queue "sync_now" (a sync of every destination) or "rescan" (an ingest of every
        source); the worker runs it soon, once."""
        if command == "sync_now":
            self.queue.put(QueuedJob("sync", command))
        else:
            self.queue.put(QueuedJob("reconcile", command))

    def status_word(self) -> str:
        return self.tracker.word()

    # -- the event fan-out -------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Every run's events: the tracker, the service's hooks, each component (whose sink
        must not raise, but one that does is logged rather than stopping a run)."""
        self.tracker(event)
        if (
            isinstance(event, RunFinished)
            and event.kind == "import"
            and event.report is not None
            and event.report.counts.get("new", 0) > 0
            and self.settings.schedule.sync_after_import
            and self.settings.destinations
        ):
            self.queue.put(QueuedJob("sync", "after import"))
        for component in self.components:
            try:
                component.sink(event)
            except Exception:
                log.exception("component %s failed on an event", component.name)

    @property
    def sinks(self) -> list[Any]:
        return [self.publish]

    # -- running -----------------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop``; raises CatalogBusy when another service holds this catalog."""
        catalog = open_catalog(
            self.settings.catalog_url, busy_timeout=self.settings.runs.busy_timeout
        )
        try:
            with LeasedRun(
                catalog,
                kind=SERVICE_KIND,
                device=self.settings.runs.host,
                keys=["service"],
                options=self.settings.runs,
            ) as lease:
                self._start_threads()
                lease.set_progress(self.status())
                lease.save_progress()
                self.notifier.ready(f"picpipe {self.status_word()}")
                log.info("service started (run %d)", lease.id)
                try:
                    self._main_loop(lease)
                finally:
                    self.notifier.stopping()
                    self._shutdown()
                    lease.set_progress(self.status())
                lease.status = "completed"
        finally:
            catalog.close()

    def _start_threads(self) -> None:
        for component in self.components:
            try:
                component.start(self, self.stop)
            except Exception:
                log.exception(
                    "component %s did not start; the service goes on without it", component.name
                )
        live = [n for n, o in self.settings.sources.items() if o.get("kind") in LIVE_RUNNERS]
        if live:
            self._spawn("live-sources", lambda: self._live(live))
        self._spawn("service-jobs", self._worker)
        if self.web is not None:
            self.web.start()
        if self.settings.destinations:
            self.queue.put(QueuedJob("sync", "start"))  # what a restart missed

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _live(self, names: list[str]) -> None:
        run_live_sources(
            self.settings,
            names,
            self.stop,
            sinks=self.sinks,
            errors=self.source_errors,
            persistent=True,
        )

    def _main_loop(self, lease: LeasedRun) -> None:
        ping = self.notifier.watchdog_seconds
        pinged = saved = 0.0
        shown: dict[str, Any] = {}
        while not self.stop.wait(TICK):
            if lease.lost.is_set():
                log.error("the service's run lost its lease; stopping")
                self.stop.set()
                break
            self.scheduler.due(self.queue)
            now = time.monotonic()
            current = self.status()
            lease.set_progress(current)
            # A changed status is written within a couple of seconds (`picpipe status` in
            # another process), not only at the lease's heartbeat.
            if current != shown and now - saved >= SAVE_EVERY:
                lease.save_progress()
                shown, saved = current, now
            if ping is not None and now - pinged >= ping / 2:
                self.notifier.watchdog()
                pinged = now
            if now >= self._refresh_due:
                self._refresh_components()
                self._refresh_due = now + 60.0

    def _refresh_components(self) -> None:
        for component in self.components:
            try:
                component.refresh()
            except Exception:
                log.exception("component %s failed to refresh", component.name)

    def _shutdown(self) -> None:
        self.stop.set()
        self.queue.wake()
        if self.web is not None:
            self.web.stop()
        deadline = time.monotonic() + 8.0
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not end in time; exiting anyway", thread.name)
        for component in self.components:
            try:
                component.close()
            except Exception:
                log.exception("component %s did not close cleanly", component.name)

    # -- the worker --------------------------------------------------------------------------

    def _worker(self) -> None:
        catalog = open_catalog(
            self.settings.catalog_url, busy_timeout=self.settings.runs.busy_timeout
        )
        tools = ExifToolPool()
        try:
            while not self.stop.is_set():
                item = self.queue.get(timeout=1.0)
                if item is None or self.stop.is_set():
                    continue
                self.current_job = item.job
                try:
                    outcome = self.run_job(catalog, tools, item)
                finally:
                    self.current_job = None
                self.jobs_done += 1
                if outcome.error:
                    self.job_errors[item.job] = outcome.error
                else:
                    self.job_errors.pop(item.job, None)
                self._refresh_components()
        finally:
            tools.close()
            catalog.close()

    def run_job(self, catalog: Catalog, tools: ExifToolPool, item: QueuedJob) -> JobOutcome:
        """Run one job; never raises for a problem of the work (it is the outcome's error)."""
        log.info("%s (%s)", item.job, item.why)
        try:
            if item.job == "sync":
                return self._sync(catalog, item.only)
            if item.job == "reconcile":
                result = ingest_all(
                    self.settings, catalog, tools=tools, sinks=self.sinks, stop=self.stop
                )
                failed = result.summary.failed if result is not None else 0
                report = result.as_dict() if result is not None else {}
                return JobOutcome("reconcile", True, report, failed_items=failed)
            report_v = scrub_library(self.settings, catalog)
            if not report_v.clean:
                log.warning(
                    "scrub: %d originals need attention (picpipe verify)", report_v.problems
                )
            return JobOutcome("scrub", report_v.clean, report_v.as_dict(), report_v.problems)
        except (ImportStopped, WatchStopped):
            return JobOutcome(item.job, False, error="stopped")
        except CatalogBusy as exc:  # the same work runs elsewhere now: it does it
            log.info("%s: %s", item.job, exc.message)
            return JobOutcome(item.job, True, error=None)
        except PicpipeError as exc:
            log.error("%s failed: %s", item.job, exc.message)
            return JobOutcome(item.job, False, error=exc.message)
        except Exception as exc:  # a bug in one job must not end the service
            log.exception("%s failed", item.job)
            return JobOutcome(item.job, False, error=f"{type(exc).__name__}: {exc}")

    def _sync(self, catalog: Catalog, only: tuple[str, ...]) -> JobOutcome:
        report = sync_destinations(
            self.settings, catalog, sinks=self.sinks, stop=self.stop, only=only
        )
        if report is None:
            return JobOutcome("sync", True)
        for name in only or tuple(self.settings.destinations):
            if name in report.unreachable:
                why = report.unreachable[name]
                self.destination_errors[name] = why
                delay = self.scheduler.destination_failed(name, why)
                log.error("%s: %s; trying again in %.0f s", name, why, delay)
            elif not self.stop.is_set():
                self.destination_errors.pop(name, None)
                self.scheduler.destination_ok(name)
        return JobOutcome(
            "sync",
            not report.unreachable and not report.failed,
            report.as_dict(),
            failed_items=report.failed,
            unreachable=dict(report.unreachable),
        )

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The service's state: the service run's progress JSON and `picpipe status`."""
        return {
            "stage": SERVICE_KIND,
            "done": self.jobs_done,
            "total": None,
            "state": self.status_word(),
            "job": self.current_job,
            "queued": self.queue.waiting(),
            "sources": {
                name: {"ok": error is None, "error": error}
                for name, error in sorted(self.source_errors.items())
            },
            "destinations": {
                name: {
                    "ok": name not in self.destination_errors,
                    "error": self.destination_errors.get(name),
                }
                for name in sorted(self.settings.destinations)
            },
            "job_errors": dict(self.job_errors),
            "components": [c.name for c in self.components],
            "web": self.web.address if self.web is not None else None,
            **self.tracker.snapshot(),
            **self.scheduler.as_dict(),
        }
