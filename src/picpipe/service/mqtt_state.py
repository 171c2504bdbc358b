"""What picpipe shows in Home Assistant, kept as the latest value per state topic.

`LiveState` folds the event stream into a few figures (status word, progress, files, current
file) under one lock: ``apply`` is a handful of assignments, so a sink never slows a run.
`render` turns it, with the latest catalog `ServiceSnapshot`, into (topic, payload) pairs; the
publisher sends only those whose payload changed. Nothing here queues: a broker that is down
for an hour costs the memory of one state, and the state sent when it is back is the latest.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from picpipe.events import ItemDone, ItemFailed, Progress, RunFinished, RunStarted
from picpipe.service.mqtt_discovery import slug

if TYPE_CHECKING:
    from collections.abc import Callable

    from picpipe.catalog.service_status import ServiceSnapshot
    from picpipe.events import Event
    from picpipe.service.mqtt_discovery import Topics

# Which word a run of each kind shows while it works (``scan`` stage: scanning).
_WORKING = {"import": "importing", "sync": "backing_up", "thumbs": "importing"}
# Topics whose state moves with every file: sent at most once per PROGRESS_INTERVAL.
PROGRESS_TOPICS = ("progress", "files", "current_file")


@dataclass(slots=True)
class _Run:
    kind: str
    stage: str
    done: int = 0
    total: int | None = None
    current: str = ""


@dataclass(slots=True)
class LiveState:
    """The event-driven half of what is shown; thread-safe, every method returns at once."""

    status: str = "idle"
    runs: dict[int, _Run] = field(default_factory=dict)
    done: int = 0
    total: int = 0
    current_file: str = ""
    last_done: int = 0  # the figures of the last run that did something
    last_total: int = 0
    # A run that finished since the publisher last looked: the catalog is re-read.
    finished: bool = False
    version: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_change: Callable[[], None] | None = None

    def apply(self, event: Event) -> None:
        """Fold one event in; never raises for an event it does not know."""
        with self.lock:
            self._apply(event)
            self.version += 1
        if self.on_change is not None:
            self.on_change()

    def _apply(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            stage = "scan" if event.kind == "import" else event.kind
            self.runs[event.run_id] = _Run(event.kind, stage)
            self.done, self.total, self.current_file = 0, 0, ""
        elif isinstance(event, Progress):
            run = self.runs.get(event.run_id)
            if run is None:
                return
            run.stage = event.stage
            if event.stage in ("scan", "import"):
                # An import's progress counts the files listed (final at "import"); the
                # files done are its item events.
                run.total = event.done
            else:  # thumbnails, replicating: the stage counts its own done of total
                run.done, run.total = event.done, event.total
        elif isinstance(event, ItemDone | ItemFailed):
            run = self.runs.get(event.run_id)
            if run is None:
                return
            run.done += 1
            if event.path:
                run.current = event.path
            if run.stage == "scan":
                run.stage = "import"
        elif isinstance(event, RunFinished):
            run = self.runs.pop(event.run_id, None)
            self.finished = True
            if run is not None and not self.runs:
                self._finish(run, event)
            return
        self._show_newest()

    def _finish(self, run: _Run, event: RunFinished) -> None:
        if event.status.startswith("completed"):
            self.status = "completed"
        elif event.status == "interrupted":
            self.status = "idle"
        else:
            self.status = "failed"
        report = event.report
        # Unchanged files are counted but not evented: the report has the whole count.
        counted = sum(report.counts.get(k, 0) for k in _FILE_OUTCOMES) if report else 0
        if not (counted or run.done or run.total) and event.status.startswith("completed"):
            # A scheduled run that found nothing to do: the last real run's figures stay.
            self.done, self.total = self.last_done, self.last_total
            self.current_file = ""
            return
        self.done = counted or run.done
        self.total = max(self.total, self.done, run.total or 0)
        self.done = self.total if self.status == "completed" else self.done
        self.last_done, self.last_total = self.done, self.total
        self.current_file = ""

    def _show_newest(self) -> None:
        if not self.runs:
            return
        run = self.runs[max(self.runs)]
        working = _WORKING.get(run.kind, "importing")
        self.status = "scanning" if run.kind == "import" and run.stage == "scan" else working
        self.done, self.total = run.done, max(run.total or 0, run.done)
        self.current_file = run.current

    def set_status(self, word: str) -> None:
        with self.lock:
            self.status = word
            self.version += 1

    @property
    def busy(self) -> bool:
        """A run is going on (its progress is rate-limited; the end of it is not)."""
        with self.lock:
            return bool(self.runs)

    def take_finished(self) -> bool:
        with self.lock:
            finished, self.finished = self.finished, False
            return finished

    def render(self, topics: Topics) -> dict[str, bytes]:
        """The event-driven state topics and their payloads."""
        with self.lock:
            percent = round(100 * self.done / self.total) if self.total else 0
            if self.status == "completed":
                percent = 100
            return {
                topics.state("status"): self.status.encode(),
                topics.state("progress"): str(min(percent, 100)).encode(),
                topics.state("files"): _json({"done": self.done, "total": self.total}),
                topics.state("current_file"): self.current_file[-250:].encode(),
            }


_FILE_OUTCOMES = ("new", "duplicate", "unchanged", "failed", "skipped", "uploaded", "present")


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def render_snapshot(topics: Topics, snapshot: ServiceSnapshot) -> dict[str, bytes]:
    """The catalog-driven state topics: library, last session, destinations, sources, cards."""
    out = {
        topics.state("library"): _json(snapshot.totals_payload()),
        topics.state("last_session"): _json(snapshot.last_session or {"status": "none"}),
    }
    for dest in snapshot.destinations:
        out[topics.state(f"destination/{slug(dest.name)}")] = _json(
            {
                "verified": dest.verified,
                "pending": dest.pending,
                "failed": dest.failed,
                "last_success": dest.last_success,
            }
        )
    for source in snapshot.sources:
        out[topics.state(f"source/{slug(source.name)}")] = _json(
            {
                "last_success": source.last_success,
                "errors": source.errors,
                "credentials_failing": source.credentials_failing,
            }
        )
    for card in snapshot.cards:
        out[topics.state(f"card/{slug(card.key)}")] = _json(
            {
                "label": card.label,
                "uuid": card.uuid,
                "state": card.state,
                "safe": card.safe,
                "files": card.files,
                "ended_at": card.ended_at,
            }
        )
    return out


@dataclass(slots=True)
class SentState:
    """What the broker holds (as far as this process knows): payload and time per topic.

    Cleared on every (re)connect, so a new broker session gets the whole state."""

    payloads: dict[str, bytes] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def due(
        self, wanted: dict[str, bytes], *, throttled: frozenset[str], interval: float
    ) -> tuple[dict[str, bytes], float | None]:
        """The changed topics to send now, and in how many seconds the rest are due (None:
        nothing held back). ``throttled`` topics wait ``interval`` since their last send."""
        now = self.clock()
        send: dict[str, bytes] = {}
        wait: float | None = None
        for topic, payload in wanted.items():
            if self.payloads.get(topic) == payload:
                continue
            if topic in throttled and topic in self.sent_at:
                remaining = self.sent_at[topic] + interval - now
                if remaining > 0:
                    wait = remaining if wait is None else min(wait, remaining)
                    continue
            send[topic] = payload
        return send, wait

    def mark(self, sent: dict[str, bytes]) -> None:
        now = self.clock()
        for topic, payload in sent.items():
            self.payloads[topic] = payload
            self.sent_at[topic] = now

    def clear(self) -> None:
        self.payloads.clear()
        self.sent_at.clear()
