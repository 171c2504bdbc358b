"""Live status: ``GET /api/status`` (JSON) and ``GET /api/events`` (server-sent events).

Imports and syncs run in other processes (the CLI, the service); everything they do lands in
the catalog (an import writes its counts with every batch, about once a second), so the status
is read from there. One ``StatusFeed`` per application (kept in ``WebContext.extras``) is
shared by every event stream: at most once a second it asks the catalog for a cheap change
marker (``catalog.status.change_marker``) and recomputes only what that says may have moved;
ten open dashboards cost what one does. ``/api/status`` always computes afresh.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.exc import SQLAlchemyError

from picpipe.catalog import status as figures
from picpipe.catalog.queries import utcnow
from picpipe.errors import CatalogError
from picpipe.web.auth import require_read
from picpipe.web.context import WebContext, get_context

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.orm import Session

    from picpipe.catalog.db import Catalog
    from picpipe.config import Settings

log = logging.getLogger(__name__)

FEED_KEY = "live.status_feed"
POLL_SECONDS = 1.0  # how often an event stream looks for a change
REFRESH_SECONDS = 15.0  # the aggregates at the latest, for changes the marker cannot see
HEARTBEAT_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream
STREAM_SECONDS = 300.0  # then the browser reconnects by itself; bounds a server shutdown
RETRY_MS = 3000  # how long a browser waits before reconnecting

router = APIRouter(tags=["live"])


def build_status(catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """The dashboard's whole status, computed now (a handful of aggregate queries)."""
    with catalog.session() as db:
        return compose(session_figures(db), library_figures(db, settings))


def session_figures(db: Session) -> dict[str, Any]:
    """The cheap part of the status: running and recent sessions, their newest problems."""
    running = figures.running_sessions(db)
    for run in running:
        run["alive"] = _process_alive(run["pid"], run["host"])
    recent = figures.recent_sessions(db, 10)
    return {
        "running": running,
        "last_session": recent[0] if recent else None,
        "recent_sessions": recent,
        "session_problems": figures.session_problems(db, 50),
    }


def library_figures(db: Session, settings: Settings) -> dict[str, Any]:
    """The aggregate part: totals, failed files, replication safety (scans at 100k assets)."""
    totals = figures.totals(db)
    failed_count = figures.failed_file_count(db)
    histogram = figures.copies_histogram(db, totals.assets)
    destinations = figures.destination_counts(db, totals.assets)
    known = {d["name"] for d in destinations}
    for name, options in sorted(settings.destinations.items()):
        if name not in known:  # configured but never synced: nothing there yet
            destinations.append(
                {
                    "name": name,
                    "kind": str(options.get("kind", "")),
                    "verified": 0,
                    "pending": 0,
                    "failed": 0,
                    "missing": totals.assets,
                }
            )
    target = settings.replicas.target
    return {
        "totals": totals.as_dict(),
        "failures": {
            "files": failed_count,
            "thumbnails": totals.thumbs_failed,
            # The lists are only looked for when there is something to list.
            "failed_files": figures.failed_files(db, 50) if failed_count else [],
            "thumbnail_failures": (
                figures.thumbnail_failures(db, 20) if totals.thumbs_failed else []
            ),
        },
        "replication": {
            "target": target,
            "under_replicated": figures.under_replicated(histogram, target),
            # Index-only assets (`mode: index`): no copy of picpipe's own, not a backup.
            "not_in_library": figures.index_only_assets(db),
            "copies": {str(c): n for c, n in histogram.items()},
            "destinations": destinations,
        },
    }


def compose(sessions: dict[str, Any], library: dict[str, Any]) -> dict[str, Any]:
    """The ``/api/status`` document from its two parts."""
    return {
        "generated_at": figures.iso(utcnow()),
        "running": sessions["running"],
        "totals": library["totals"],
        "last_session": sessions["last_session"],
        "recent_sessions": sessions["recent_sessions"],
        "failures": library["failures"] | {"session_problems": sessions["session_problems"]},
        "replication": library["replication"],
    }


def _process_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether a running session's process still exists; None when it is on another host."""
    if pid is None or host != socket.gethostname()[:200]:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


class StatusFeed:
    """The latest status of one application, shared by all event streams (thread-safe).

    At most every ``poll_seconds`` it reads the change marker. When the marker moved, the
    session part is rebuilt (cheap); the library part (aggregates over every asset and
    replica) only when a session started or ended, replicas were added, or it is older than
    ``refresh_seconds``, so an import's per-second progress costs a few index lookups.

    ``current()`` returns ``(version, status)``; ``version`` grows whenever the status
    (apart from ``generated_at``) differs from the previous one.
    """

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        *,
        poll_seconds: float = POLL_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._version = 0
        self._status: dict[str, Any] = {}
        self._compare = ""
        self._marker: figures.ChangeMarker | None = None
        self._sessions: dict[str, Any] = {}
        self._library: dict[str, Any] = {}
        self._checked = -float("inf")
        self._library_at = -float("inf")
        self._library_cost = 0.0

    def current(self) -> tuple[int, dict[str, Any]]:
        """The status, refreshed when due; blocks on catalog queries (call from a thread)."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.poll_seconds:
                return self._version, self._status
            self._checked = now
            with self.catalog.session() as db:
                marker = figures.change_marker(db)
                old = self._marker
                # A slow catalog is asked less often: at most ~5% of the time goes to the
                # periodic aggregates (at 100k assets they take a few hundred ms).
                refresh = max(self.refresh_seconds, 20 * self._library_cost)
                library_due = (
                    old is None
                    or marker.sessions != old.sessions
                    or marker.replicas != old.replicas
                    or now - self._library_at >= refresh
                )
                if library_due:
                    self._library = library_figures(db, self.settings)
                    self._library_at = time.monotonic()
                    self._library_cost = self._library_at - now
                if library_due or marker != old:
                    self._sessions = session_figures(db)
                    self._marker = marker
                    self._publish(compose(self._sessions, self._library))
            return self._version, self._status

    def _publish(self, status: dict[str, Any]) -> None:
        compare = json.dumps({k: v for k, v in status.items() if k != "generated_at"})
        if compare != self._compare:
            self._compare = compare
            self._version += 1
            self._status = status


def status_feed(ctx: WebContext) -> StatusFeed:
    """The application's shared feed, created on first use."""
    feed = ctx.extras.get(FEED_KEY)
    if feed is None:
        feed = ctx.extras.setdefault(FEED_KEY, StatusFeed(ctx.catalog, ctx.settings))
    assert isinstance(feed, StatusFeed)
    return feed


Context = Annotated[WebContext, Depends(get_context)]


@router.get("/api/status", dependencies=[Depends(require_read)], summary="Live status")
def get_status(ctx: Context) -> JSONResponse:
    """Running sessions with their progress, totals, the last session, failures, and the
    replication safety figures (assets with fewer verified copies than ``replicas.target``,
    the library's own copy included; per destination verified/pending/failed/missing)."""
    return JSONResponse(
        build_status(ctx.catalog, ctx.settings), headers={"Cache-Control": "no-store"}
    )


@router.get(
    "/api/events",
    dependencies=[Depends(require_read)],
    summary="Live status as server-sent events",
    response_class=StreamingResponse,
)
def get_events(ctx: Context) -> StreamingResponse:
    """A ``text/event-stream``: an ``event: status`` with the ``/api/status`` document at once
    and again whenever it changes (checked about once a second), a comment line every 15 s
    while nothing changes. The stream ends after five minutes and the browser reconnects."""
    return StreamingResponse(
        event_stream(status_feed(ctx)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def event_stream(feed: StatusFeed, *, lifetime: float = STREAM_SECONDS) -> AsyncIterator[str]:
    """Server-sent events from ``feed`` until ``lifetime`` passes or the client goes away.

    Starlette cancels this generator when the client disconnects. A catalog error ends the
    stream (the browser reconnects), without a traceback per open dashboard.
    """
    yield f"retry: {RETRY_MS}\n\n"
    sent = -1
    started = last_write = time.monotonic()
    while time.monotonic() - started < lifetime:
        try:
            version, status = await anyio.to_thread.run_sync(feed.current)
        except (SQLAlchemyError, CatalogError) as exc:
            # The catalog is away (database restart, NAS hiccup): end this stream; the
            # browser reconnects after RETRY_MS and the dashboard says it is reconnecting.
            log.warning("live status: catalog not readable (%s)", type(exc).__name__)
            return
        now = time.monotonic()
        if version != sent:
            sent, last_write = version, now
            yield f"id: {version}\nevent: status\ndata: {json.dumps(status)}\n\n"
        elif now - last_write >= HEARTBEAT_SECONDS:
            last_write = now
            yield ": keep-alive\n\n"
        await anyio.sleep(feed.poll_seconds)
