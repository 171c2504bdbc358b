"""Things that happened, as frozen values. Progress travels as events, not as log lines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["new", "duplicate", "unchanged", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class SessionStarted:
    session_id: int
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScanProgress:
    session_id: int
    seen: int
    queued: int


@dataclass(frozen=True, slots=True)
class ItemFinished:
    session_id: int
    path: str
    outcome: Outcome
    size: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SessionFinished:
    session_id: int
    status: str


ReplicaOutcome = Literal["uploaded", "present", "verified", "failed", "planned"]


@dataclass(frozen=True, slots=True)
class SyncPlanned:
    """More work found: ``assets`` assets and ``bytes`` bytes to replicate (sent per page)."""

    session_id: int
    assets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ReplicaFinished:
    """One asset at one destination: uploaded and verified, already present, re-verified,
    failed (with the reason), or only planned (dry run)."""

    session_id: int
    destination: str
    path: str
    key: str
    outcome: ReplicaOutcome
    size: int
    reason: str | None = None


Event = (
    SessionStarted | ScanProgress | ItemFinished | SessionFinished | SyncPlanned | ReplicaFinished
)
EventSink = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """An event sink that drops everything (library use without a UI)."""
