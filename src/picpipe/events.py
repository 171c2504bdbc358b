"""Things that happened in a run, as frozen values: one stream for every kind of run.

Runs (import, sync, thumbs, sidecars) publish these to sinks through their `LeasedRun`; the
CLI's progress display, the run's heartbeat (which stores progress in the catalog for the
dashboard and `status`) and, later, MQTT are sinks of the same stream. No run knows which
sinks listen. Progress is not logging.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from picpipe.jobs.report import RunReport

Outcome = Literal["new", "duplicate", "unchanged", "failed", "skipped"]
ReplicaOutcome = Literal["uploaded", "present", "verified", "failed", "planned"]


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: int
    kind: str  # import | sync | thumbs | sidecars
    label: str  # source names, destination names


@dataclass(frozen=True, slots=True)
class Progress:
    """``done`` of ``total`` (None: still counting) in ``stage`` (scan, upload, thumbnails…);
    ``queued`` items are in flight."""

    run_id: int
    stage: str
    done: int
    total: int | None = None
    queued: int = 0


@dataclass(frozen=True, slots=True)
class ItemDone:
    """One item finished: a file imported or found again, a replica uploaded or present, a
    thumbnail made. ``target`` names the destination for replicas."""

    run_id: int
    path: str
    outcome: str
    size: int
    target: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class ItemFailed:
    """One item failed with the reason a person can act on; the run goes on."""

    run_id: int
    path: str
    reason: str
    size: int = 0
    target: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: int
    kind: str
    status: str
    report: RunReport | None = None


Event = RunStarted | Progress | ItemDone | ItemFailed | RunFinished
EventSink = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """An event sink that drops everything (library use without a UI)."""
