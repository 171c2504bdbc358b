"""What the service runs beside its pipeline: publishers (MQTT), schedulers, servers.

The service (`picpipe start`) owns one event stream: every run it starts publishes its
events to every component's ``sink``. Components never block that stream (a broker that is
down must not slow an import), never raise out of ``sink``, and ask the service for work
through the `ServiceControl` they are given (a Home Assistant "sync now" button).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    import threading

    from picpipe.events import Event

# What a component may ask the service to do.
Command = Literal["sync_now", "rescan"]


class ServiceControl(Protocol):
    def request(self, command: Command) -> None:
        """Queue ``command``; the service runs it on its own threads, soon."""

    def status_word(self) -> str:
        """idle | scanning | importing | backing_up | completed | failed"""


class ServiceComponent(Protocol):
    name: str

    def start(self, control: ServiceControl, stop: threading.Event) -> None:
        """Begin work in the background and return at once."""

    def sink(self, event: Event) -> None:
        """Take one event of any run; returns at once, never raises."""

    def refresh(self) -> None:
        """Re-read what the component shows (catalog totals...); called after each run and
        periodically by the service."""

    def close(self) -> None:
        """Stop within a second or two; publish a last state when it can."""
