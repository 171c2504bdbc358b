"""Card sessions: a card inserted → ingest → replicate its assets → "safe to format" or not.

`run_removable` is what ``picpipe watch`` runs for a ``kind: removable`` source: it watches the
mount roots (`sources/card_detect.py`) and runs one `CardSession` per insertion, one card at a
time, until ``stop`` is set. A session:
1. finds or resumes its row (the same card — uuid and label — whose last session was cut short
   carries on with it: nothing already read is read or copied again, because the card's files
   are kept in the catalog under one source per card and unchanged files are not re-read);
2. ingests the card (the ``ingest`` workflow, one leased run);
3. replicates the card's assets to every configured destination (the replicate workflow, only
   those assets: the rest of the library waits for the next ``picpipe sync``);
4. re-scans the card and judges it (`jobs/card_safety.py`): ``safe`` or ``not_safe`` with the
   blocking files and reasons.
A card pulled during any step (its folder gone or another card in its place) ends the session
``interrupted``; so does ``stop``. picpipe never writes, deletes or formats anything on a card.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from picpipe.catalog.cards import begin_card_session, card_files, card_source_name
from picpipe.catalog.cards import update_card_session as update
from picpipe.catalog.db import open_catalog
from picpipe.destinations.base import open_destination
from picpipe.errors import CardPulled, ConfigError, PicpipeError, UdisksFailed
from picpipe.jobs.card_safety import READ_STATES, SafetyReport, check_card
from picpipe.jobs.replicate import SyncRun
from picpipe.jobs.retry import RetryPolicy
from picpipe.jobs.workflows import ingest
from picpipe.pipeline.exiftool import ExifToolPool
from picpipe.redact import validation_problems
from picpipe.sources.card_detect import CardIdentity, CardWatcher, identify_card
from picpipe.sources.mounts import mount_of, read_mounts
from picpipe.sources.removable import RemovableOptions, RemovableSource
from picpipe.sources.udisks import Udisks, unmounted_cards

if TYPE_CHECKING:
    from collections.abc import Sequence

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings
    from picpipe.destinations.base import Destination
    from picpipe.events import EventSink

log = logging.getLogger(__name__)


def removable_options(name: str, options: dict[str, Any]) -> RemovableOptions:
    """The parsed options of the ``sources.<name>`` entry; ConfigError names bad keys only."""
    fields = {k: v for k, v in options.items() if k != "kind"}
    try:
        return RemovableOptions(**fields)
    except ValidationError as exc:
        problems = validation_problems(exc, prefix=f"sources.{name}.")
        raise ConfigError(detail="; ".join(problems)) from None


class CardSession:
    """One insertion of one card; `run` returns the session's final state."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        tools: ExifToolPool,
        name: str,
        options: RemovableOptions,
        card: CardIdentity,
        *,
        sinks: Sequence[EventSink] = (),
        stop: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.tools = tools
        self.name = name
        self.options = options
        self.card = card
        self.sinks = list(sinks)
        self.stop = stop or threading.Event()
        self.catalog_source = card_source_name(name, card)
        self.source = RemovableSource(
            self.catalog_source, Path(card.path), settings.scan, disposable=options.disposable
        )
        self.id = 0
        self.resumed = False
        self.safety: SafetyReport | None = None

    def run(self) -> str:
        with self.catalog.write() as db:
            self.id, self.resumed = begin_card_session(db, self.name, self.card)
        log.info(
            "card %s (%s) in %s: session %d %s",
            self.card.label,
            self.card.uuid,
            self.card.path,
            self.id,
            "resumed" if self.resumed else "started",
        )
        try:
            return self._steps()
        except CardPulled as why:
            log.warning("card %s: session %d interrupted: %s", self.card.label, self.id, why)
            self._set(state="interrupted", error=str(why))
            return "interrupted"
        except PicpipeError as exc:
            # The library or catalog failed under the session: it resumes on the next insertion.
            log.error("card %s: session %d stopped: %s", self.card.label, self.id, exc.message)
            self._set(state="interrupted", error=exc.message)
            return "interrupted"

    def _steps(self) -> str:
        result = ingest(
            self.settings,
            self.catalog,
            [self.source],
            tools=self.tools,
            sinks=self.sinks,
            thumbnails=self.settings.thumbs.on_import,
        )
        self._set(import_session_id=result.summary.session_id, files=result.summary.seen)
        self._still_here("while it was being read")
        self._set(state="replicating")
        self._replicate()
        self._still_here("before the final check")
        self._set(state="checking")
        safety = self.safety = check_card(
            self.catalog,
            self.source,
            self.catalog_source,
            library_root=self.settings.library_root,
            safe_replicas=self.options.safe_replicas,
            library_counts=self.options.library_counts,
        )
        self._still_here("during the final check")  # a re-scan of a pulled card proves nothing
        state = "safe" if safety.safe else "not_safe"
        self._set(state=state, files=safety.files, blocking=safety.blocking, error=None)
        if safety.safe:
            log.info("card %s: safe to format (%d files)", self.card.label, safety.files)
        else:
            log.warning(
                "card %s: not safe to format: %d files block it (first: %s: %s)",
                self.card.label,
                len(safety.blocking),
                safety.blocking[0]["path"],
                safety.blocking[0]["reason"],
            )
        return state

    def _replicate(self) -> None:
        """The card's assets to every configured destination, verified at the far end."""
        with self.catalog.session() as db:
            shas = frozenset(
                f.sha256
                for f in card_files(db, self.catalog_source).values()
                if f.state in READ_STATES and f.sha256
            )
        configured = self.settings.destinations
        if not shas or not configured:
            return
        backends: dict[str, Destination] = {
            n: open_destination(n, dict(raw)) for n, raw in configured.items()
        }
        replicas = self.settings.replicas
        try:
            report = SyncRun(
                self.catalog,
                self.settings.library_root,
                backends,
                policy=RetryPolicy(replicas.retries, replicas.backoff_base, replicas.backoff_max),
                concurrency={
                    n: int(configured[n].get("concurrency") or replicas.concurrency)
                    for n in backends
                },
                sinks=self.sinks,
                stop=self.stop,
                runs=self.settings.runs,
                only=shas,
            ).run()
        finally:
            for backend in backends.values():
                backend.close()
        self._set(sync_session_id=report.session_id)

    def _still_here(self, when: str) -> None:
        if self.stop.is_set():
            raise CardPulled(f"picpipe was stopped {when}")
        try:
            now = identify_card(Path(self.card.path))
        except OSError:
            raise CardPulled(f"card pulled {when}") from None
        if (now.uuid, now.label) != (self.card.uuid, self.card.label):
            raise CardPulled(f"card pulled {when}: {now.label} ({now.uuid}) is there now")
        if not os.path.isdir(self.card.path):
            raise CardPulled(f"card pulled {when}")

    def _set(self, **fields: Any) -> None:
        with self.catalog.write() as db:
            update(db, self.id, **fields)


class CardService:
    """Watch for cards and run a session per insertion, one card at a time."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        options: RemovableOptions,
        *,
        catalog: Catalog | None = None,
        tools: ExifToolPool | None = None,
        sinks: Sequence[EventSink] = (),
    ) -> None:
        self.settings = settings
        self.name = name
        self.options = options
        self.sinks = list(sinks)
        self._own_catalog = catalog is None
        self.catalog = catalog or open_catalog(
            settings.catalog_url, busy_timeout=settings.runs.busy_timeout
        )
        self._own_tools = tools is None
        self.tools = tools or ExifToolPool()
        self.watcher = CardWatcher(options.mount_roots, options.paths, udev=options.udev)
        self.sessions: list[CardSession] = []  # every session this service ran, in order
        self.udisks = Udisks()

    def serve(self, stop: threading.Event) -> None:
        """Blocks until ``stop`` is set (a session in progress ends as interrupted)."""
        try:
            while not stop.is_set():
                self.tick(stop)
                self.watcher.wait(stop, self.options.poll_seconds)
        finally:
            self.close()

    def tick(self, stop: threading.Event) -> None:
        """One look at the mount roots; a session for each card found inserted."""
        if self.options.udisks_mount:
            self._mount_new_cards()
        inserted, pulled = self.watcher.poll()
        for path in pulled:
            log.info("card at %s removed", path)
        for path in inserted:
            if stop.is_set():
                return
            try:
                card = identify_card(Path(path))
            except OSError as exc:
                log.warning("card at %s cannot be read: %s", path, exc.strerror or exc)
                continue
            session = CardSession(
                self.settings,
                self.catalog,
                self.tools,
                self.name,
                self.options,
                card,
                sinks=self.sinks,
                stop=stop,
            )
            self.sessions.append(session)
            if session.run() == "safe" and self.options.eject_when_safe:
                self._eject(card)

    def _mount_new_cards(self) -> None:
        """Cards the system left unmounted, mounted read-only through udisks2 (once each)."""
        if not self.udisks.available():
            return
        waiting = unmounted_cards(self.options.devices)
        self.udisks.tried &= set(waiting)  # a card pulled and inserted again is tried again
        for device in waiting:
            if device in self.udisks.tried:
                continue
            try:
                where = self.udisks.mount(device)
            except UdisksFailed as exc:
                self.udisks.tried.add(device)
                log.warning("card in %s cannot be mounted: %s", device, exc)
                continue
            log.info("card in %s mounted read-only at %s", device, where)

    def _eject(self, card: CardIdentity) -> None:
        mount = mount_of(os.path.realpath(card.path), read_mounts())
        if mount is None or not mount.source.startswith("/dev/") or not self.udisks.available():
            log.info("card %s is safe to format; eject it yourself", card.label)
            return
        try:
            self.udisks.eject(mount.source)
        except UdisksFailed as exc:
            log.warning("card %s is safe to format but was not ejected: %s", card.label, exc)
            return
        log.info("card %s ejected: it can be pulled", card.label)

    def close(self) -> None:
        self.watcher.close()
        if self._own_tools:
            self.tools.close()
        if self._own_catalog:
            self.catalog.close()


def run_removable(
    settings: Settings,
    name: str,
    options: dict[str, Any],
    stop: threading.Event,
    /,
    *,
    sinks: Sequence[EventSink] = (),
) -> None:
    """Run the removable source ``name`` (its config entry ``options``) until ``stop`` is set:
    the entry point ``picpipe watch`` and the service use. Raises ConfigError for bad options."""
    CardService(settings, name, removable_options(name, options), sinks=sinks).serve(stop)
