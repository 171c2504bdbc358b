"""systemd's notification protocol (sd_notify): READY=1, WATCHDOG=1, STATUS=, STOPPING=1.

A few lines over a unix datagram socket instead of libsystemd: ``NOTIFY_SOCKET`` names the
socket (a leading ``@`` is the abstract namespace), ``WATCHDOG_USEC`` the watchdog period.
Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Messages to the service manager; never raises (a notification is best-effort)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = ("\0" + raw[1:] if raw.startswith("@") else raw) or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process the watchdog is meant for (not a child).
        mine = not pid or pid == str(os.getpid())
        self.watchdog_seconds: float | None = (
            int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True when it was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Never wait: a manager that reads slowly (a full queue) must not stall the
                # service's main loop, and so its own watchdog and SIGTERM handling.
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            log.debug("sd_notify %s not sent: %s", fields, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.watchdog_seconds is not None and self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")
