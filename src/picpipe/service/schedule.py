"""The ``schedule:`` expressions: ``every <n><unit>...`` intervals and five-field cron.

Intervals count from the service's start (``every 15m`` runs 15 minutes after it, then every
15 minutes); cron expressions follow the wall clock in the machine's local time, as cron
does. croniter parses cron (a well-kept library: day-of-week names, ranges, steps); the
interval form is a few lines of our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"^every\s+((?:\d+(?:\.\d+)?\s*[smhdw]\s*)+)$", re.IGNORECASE)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
MIN_INTERVAL = 1.0  # seconds: below this a schedule would spin


@dataclass(frozen=True, slots=True)
class Interval:
    """``every 15m``: a fixed period in seconds."""

    seconds: float
    text: str

    def next_after(self, when: datetime) -> datetime:
        return when + timedelta(seconds=self.seconds)


@dataclass(frozen=True, slots=True)
class Cron:
    """``0 3 * * 0``: the next wall-clock time cron would run it."""

    expression: str

    def next_after(self, when: datetime) -> datetime:
        from croniter import croniter

        following: datetime = croniter(self.expression, when).get_next(datetime)
        return following

    @property
    def text(self) -> str:
        return self.expression


Schedule = Interval | Cron


def parse_schedule(text: str) -> Schedule:
    """``every 1h30m`` or a cron expression; ValueError with the problem otherwise."""
    stripped = " ".join(text.split())
    match = _INTERVAL.match(stripped)
    if match:
        seconds = sum(float(n) * UNITS[u.lower()] for n, u in _PART.findall(match.group(1)))
        if seconds < MIN_INTERVAL:
            raise ValueError(f"{text!r}: an interval of at least {MIN_INTERVAL:g}s")
        return Interval(seconds, stripped)
    if stripped.lower().startswith("every"):
        raise ValueError(f"{text!r}: write intervals as 'every 15m' (units s, m, h, d, w)")
    from croniter import croniter

    if len(stripped.split()) != 5 or not croniter.is_valid(stripped):
        raise ValueError(
            f"{text!r}: neither 'every <n><s|m|h|d|w>' nor a five-field cron expression"
        )
    return Cron(stripped)
