"""The service's status word, kept from the event stream of every run it starts.

idle (nothing ran yet) → scanning (an ingest lists its sources) → importing (files through
the stages, thumbnails) → backing_up (a sync) → completed | failed (the last run's outcome,
kept until the next run starts). With runs overlapping (a watcher's ingest during a sync) the
busiest word wins: backing_up over importing over scanning.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from picpipe.events import ItemDone, ItemFailed, Progress, RunFinished, RunStarted

if TYPE_CHECKING:
    from picpipe.events import Event

StatusWord = Literal["idle", "scanning", "importing", "backing_up", "completed", "failed"]
STATUS_WORDS: tuple[StatusWord, ...] = (
    "idle",
    "scanning",
    "importing",
    "backing_up",
    "completed",
    "failed",
)
_BUSY_ORDER: tuple[StatusWord, ...] = ("backing_up", "importing", "scanning")
_FAILED_STATUSES = frozenset({"failed"})  # "completed_with_failures" completed: counts say more


@dataclass(slots=True)
class _Active:
    kind: str
    word: StatusWord
    done: int = 0
    total: int | None = None
    current: str | None = None


@dataclass(slots=True)
class LastRun:
    run_id: int
    kind: str
    status: str
    counts: dict[str, int]
    finished_at: float


@dataclass(slots=True)
class StatusTracker:
    """An event sink (thread-safe, never raises) that knows what the service is doing."""

    _active: dict[int, _Active] = field(default_factory=dict)
    _final: StatusWord = "idle"
    last_run: LastRun | None = None
    runs_finished: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._take(event)

    def _take(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            word: StatusWord = "backing_up" if event.kind == "sync" else "scanning"
            self._active[event.run_id] = _Active(event.kind, word)
            return
        if isinstance(event, RunFinished):
            self._active.pop(event.run_id, None)
            self.runs_finished += 1
            report = event.report
            self.last_run = LastRun(
                event.run_id,
                event.kind,
                event.status,
                dict(report.counts) if report is not None else {},
                time.time(),
            )
            self._final = "failed" if event.status in _FAILED_STATUSES else "completed"
            return
        active = self._active.get(event.run_id)
        if active is None:
            return
        if isinstance(event, Progress):
            if active.kind != "sync":
                active.word = "scanning" if event.stage == "scan" else "importing"
            active.done, active.total = event.done, event.total
        elif isinstance(event, ItemDone | ItemFailed):
            if active.kind != "sync":
                active.word = "importing"
            active.current = event.path or active.current

    def word(self) -> StatusWord:
        with self._lock:
            words = {a.word for a in self._active.values()}
            for busy in _BUSY_ORDER:
                if busy in words:
                    return busy
            return self._final

    def snapshot(self) -> dict[str, Any]:
        """The status as JSON-able data (the service run's progress, `picpipe status`)."""
        with self._lock:
            active = [
                {"run_id": run_id, "kind": a.kind, "state": a.word, "done": a.done,
                 "total": a.total, "current": a.current}
                for run_id, a in sorted(self._active.items())
            ]  # fmt: skip
            last = self.last_run
            last_dict = (
                {
                    "run_id": last.run_id,
                    "kind": last.kind,
                    "status": last.status,
                    "counts": last.counts,
                    "finished_at": last.finished_at,
                }
                if last is not None
                else None
            )
        return {"active": active, "last_run": last_dict, "runs_finished": self.runs_finished}
