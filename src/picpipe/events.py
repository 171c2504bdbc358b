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


Event = SessionStarted | ScanProgress | ItemFinished | SessionFinished
EventSink = Callable[[Event], None]


def ignore_events(event: Event) -> None:
    """An event sink that drops everything (library use without a UI)."""
