"""Login sessions that end, and a ``/login`` that cannot be guessed at speed.

- `SessionStore`: server-side sessions in the catalog (``catalog/web_sessions.py``). The
  cookie names a random session id (signed with the role's token, see ``web/auth.py``); the
  session is valid while its catalog row exists, so ``/logout`` ends it for every server
  process and across restarts, and a changed token ends every session made with the old one
  (the signature no longer matches). A positive answer is remembered for `RECHECK_SECONDS`
  so a gallery page of 100 thumbnails costs one catalog read, not 100; a session revoked by
  another process therefore ends there within that time (in this process: at once).
- `LoginThrottle`: per client address, `FREE_FAILURES` wrong tokens are free; after that each
  further attempt waits twice as long as the last (2 s, 4 s … up to `MAX_DELAY`) and is
  answered 429 with ``Retry-After`` until then. The start of a throttle is logged once.
  Kept in memory: a restart forgives, which is fine for a delay measured in minutes.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from picpipe.catalog import web_sessions

if TYPE_CHECKING:
    from collections.abc import Callable

    from picpipe.catalog.db import Catalog

log = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0
FREE_FAILURES = 5
MAX_DELAY = 900.0  # seconds
_MAX_CLIENTS = 10_000  # addresses remembered by the throttle (oldest forgotten first)
_MAX_REMEMBERED = 10_000  # live sessions remembered between catalog checks


def _utcnow(clock: Callable[[], float]) -> datetime:
    return datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None)


class SessionStore:
    """Create, check and revoke login sessions in the catalog; thread-safe."""

    def __init__(
        self, catalog: Catalog, *, lifetime: timedelta, clock: Callable[[], float] = time.time
    ) -> None:
        self.catalog = catalog
        self.lifetime = lifetime
        self.clock = clock
        self._checked: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, role: str) -> str:
        """A new session id for ``role`` (``w``/``r``), recorded in the catalog."""
        session_id = secrets.token_urlsafe(24)
        with self.catalog.session() as db:
            web_sessions.add_session(
                db, session_id, role, now=_utcnow(self.clock), lifetime=self.lifetime
            )
        return session_id

    def is_live(self, session_id: str, role: str) -> bool:
        """True when ``session_id`` exists for ``role`` and has not expired or been revoked."""
        now = self.clock()
        with self._lock:
            seen = self._checked.get(session_id)
            if seen is not None and seen[0] == role and now - seen[1] < RECHECK_SECONDS:
                return True
        with self.catalog.session() as db:
            found = web_sessions.session_role(db, session_id, now=_utcnow(self.clock))
        with self._lock:
            if found != role:
                self._checked.pop(session_id, None)
                return False
            self._checked[session_id] = (role, now)
            self._checked.move_to_end(session_id)
            while len(self._checked) > _MAX_REMEMBERED:
                self._checked.popitem(last=False)
        return True

    def revoke(self, session_id: str) -> None:
        """End ``session_id`` (no error when it is unknown)."""
        with self._lock:
            self._checked.pop(session_id, None)
        with self.catalog.session() as db:
            web_sessions.revoke_session(db, session_id)


class LoginThrottle:
    """Failed ``/login`` attempts per client address; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        # address → (failures, not before)
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_for(self, client: str) -> float:
        """Seconds ``client`` must wait before its next attempt counts (0 = go ahead)."""
        with self._lock:
            entry = self._clients.get(client)
        if entry is None:
            return 0.0
        return max(0.0, entry[1] - self.clock())

    def failed(self, client: str) -> None:
        """Count a wrong token from ``client``; log once when its throttle begins."""
        with self._lock:
            failures = self._clients.get(client, (0, 0.0))[0] + 1
            delay = 0.0
            if failures > FREE_FAILURES:
                delay = min(MAX_DELAY, 2.0 ** (failures - FREE_FAILURES))
            self._clients[client] = (failures, self.clock() + delay)
            self._clients.move_to_end(client)
            while len(self._clients) > _MAX_CLIENTS:
                self._clients.popitem(last=False)
        if failures == FREE_FAILURES + 1:
            log.warning(
                "%d wrong tokens at /login from %s; its further attempts are slowed down",
                failures,
                client,
            )

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        with self._lock:
            self._clients.pop(client, None)
