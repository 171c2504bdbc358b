"""When the service's jobs are due: the ``schedule:`` section, requests ("sync now",
"rescan", a sync after an import), and the backoff of a destination that failed.

`JobQueue` holds each job at most once (a second "sync now" while one waits adds nothing);
`Scheduler.due` moves the jobs whose time came into it. Destinations that were unreachable
are retried alone, sooner than the schedule, with a doubling delay.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from picpipe.service.schedule import parse_schedule
from picpipe.service.work import JOBS

if TYPE_CHECKING:
    from collections.abc import Callable

    from picpipe.config import ScheduleOptions
    from picpipe.service.schedule import Schedule
    from picpipe.service.work import Job

FIRST_RETRY = 2.0  # seconds before a failed destination is tried again
LONGEST_RETRY = 300.0


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job: Job
    why: str
    only: tuple[str, ...] = ()  # destinations: a retry of the ones that failed


class JobQueue:
    """Jobs waiting for the service's worker, each (job, destinations) once."""

    def __init__(self) -> None:
        self._items: deque[QueuedJob] = deque()
        self._ready = threading.Condition()

    def put(self, item: QueuedJob) -> bool:
        """Queue ``item`` unless the same job waits already; True when queued."""
        with self._ready:
            if any(q.job == item.job and q.only == item.only for q in self._items):
                return False
            if item.only and any(q.job == item.job and not q.only for q in self._items):
                return False  # a full sync waits already: it covers the retry
            self._items.append(item)
            self._ready.notify()
            return True

    def get(self, timeout: float) -> QueuedJob | None:
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            return self._items.popleft() if self._items else None

    def waiting(self) -> list[str]:
        with self._ready:
            return [q.job for q in self._items]

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


@dataclass(slots=True)
class _Backoff:
    delay: float
    due: float
    error: str


@dataclass(slots=True)
class Scheduler:
    """The due times of the scheduled jobs and of destination retries (wall clock)."""

    options: ScheduleOptions
    clock: Callable[[], datetime] = datetime.now
    schedules: dict[Job, Schedule] = field(default_factory=dict)
    next_due: dict[Job, datetime] = field(default_factory=dict)
    retries: dict[str, _Backoff] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = self.clock()
        for job in JOBS:
            text = getattr(self.options, job)
            if text:
                self.schedules[job] = parse_schedule(text)
                self.next_due[job] = self.schedules[job].next_after(now)

    def due(self, queue: JobQueue) -> None:
        """Queue every job whose time came, and every destination retry that is due."""
        now = self.clock()
        for job, when in list(self.next_due.items()):
            if when <= now:
                queue.put(QueuedJob(job, "schedule"))
                self.next_due[job] = self.schedules[job].next_after(now)
        stamp = now.timestamp()
        ready = sorted(n for n, b in self.retries.items() if b.due <= stamp)
        if ready:
            queue.put(QueuedJob("sync", "retry", tuple(ready)))
            for name in ready:
                self.retries[name].due = float("inf")  # until that sync's outcome is known

    def destination_failed(self, name: str, error: str) -> float:
        """Back off ``name``; returns the seconds until its retry."""
        previous = self.retries.get(name)
        delay = FIRST_RETRY if previous is None else min(previous.delay * 2, LONGEST_RETRY)
        self.retries[name] = _Backoff(delay, self.clock().timestamp() + delay, error)
        return delay

    def destination_ok(self, name: str) -> None:
        self.retries.pop(name, None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "next": {
                job: when.isoformat(timespec="seconds") for job, when in self.next_due.items()
            },
            "schedule": {job: s.text for job, s in self.schedules.items()},
            "retrying": {
                name: {"error": b.error, "delay_seconds": b.delay}
                for name, b in self.retries.items()
            },
        }
