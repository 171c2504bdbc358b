"""`picpipe start`: the long-running service, or with ``--once`` one full pass (for timers)."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

import typer

from picpipe.catalog.db import open_catalog
from picpipe.cli.app import console, emit_json, reports_errors, state
from picpipe.cli.serve import refuse_unmounted_library
from picpipe.errors import DestinationUnavailable, ItemsFailed
from picpipe.pipeline.exiftool import ExifToolPool, exiftool_command
from picpipe.service.components import configured_components
from picpipe.service.notify import Notifier
from picpipe.service.service import PicpipeService
from picpipe.service.work import ingest_all, sync_destinations

if TYPE_CHECKING:
    from picpipe.config import Settings


def register(app: typer.Typer) -> None:
    app.command("start")(start)


@reports_errors
def start(
    ctx: typer.Context,
    once: bool = typer.Option(
        False, "--once", help="One full pass (ingest every source, sync), then exit."
    ),
    web: bool = typer.Option(True, "--web/--no-web", help="Serve the web UI and API too."),
    host: str | None = typer.Option(None, "--host", help="Web address (default serve.host)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Web port (default serve.port; 0: any free one)."
    ),
    insecure_open: bool = typer.Option(
        False, "--insecure-open", help="Allow a reachable web address without a strong token."
    ),
    as_json: bool = typer.Option(False, "--json", help="With --once: print the pass as JSON."),
) -> None:
    """Run picpipe as a service: live sources, scheduled syncs, reconciles and scrubs, the web
    server and the MQTT publisher, until SIGTERM or Ctrl-C (exits within a few seconds).

    With --once: ingest every source and sync every destination once, then exit with the
    code `import` and `sync` use (3 when items failed, 11 when a destination was unreachable).
    """
    settings = state(ctx).settings
    exiftool_command()  # a clear error now rather than one per file
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()  # imports end between files, syncs between uploads

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if once:
            _once(settings, stop, as_json)
            return
        components = configured_components(settings)
        web_thread = None
        if web:
            from picpipe.service.web import WebThread  # the web stack loads only to serve

            refuse_unmounted_library(settings)
            web_thread = WebThread(
                settings,
                host or settings.serve.host,
                settings.serve.port if port is None else port,
                insecure=insecure_open,
            )
        service = PicpipeService(
            settings,
            stop=stop,
            components=components,
            notifier=Notifier(),
            web=web_thread,
        )
        where = f", web on {web_thread.address}" if web_thread is not None else ""
        console.print(f"picpipe service running{where}; stop with Ctrl-C", markup=False)
        service.run()
        console.print("picpipe service stopped", markup=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _once(settings: Settings, stop: threading.Event, as_json: bool) -> None:
    """Ingest, then sync: the pass a systemd timer or cron runs (no components: a pass
    ends before a publisher would have connected)."""
    sinks: list[Any] = []
    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    tools = ExifToolPool()
    try:
        ingested = ingest_all(settings, catalog, tools=tools, sinks=sinks, stop=stop)
        if stop.is_set():
            raise KeyboardInterrupt
        synced = sync_destinations(settings, catalog, sinks=sinks, stop=stop)
        if stop.is_set():
            raise KeyboardInterrupt
    finally:
        tools.close()
        catalog.close()
    result: dict[str, Any] = {
        "ingest": ingested.as_dict() if ingested is not None else None,
        "sync": synced.as_dict() if synced is not None else None,
    }
    if as_json:
        emit_json(result)
    else:
        if ingested is not None:
            s = ingested.summary
            console.print(
                f"ingest: {s.seen} seen, {s.new} new, {s.duplicate} duplicate, "
                f"{s.failed} failed, {s.skipped} skipped",
                markup=False,
            )
        if synced is not None:
            console.print(
                f"sync: {synced.status}, {synced.failed} failed"
                + (f", unreachable: {', '.join(synced.unreachable)}" if synced.unreachable else ""),
                markup=False,
            )
    if synced is not None and synced.unreachable:
        detail = "; ".join(f"{n}: {why}" for n, why in synced.unreachable.items())
        raise DestinationUnavailable(destination=", ".join(synced.unreachable), detail=detail)
    failed = (ingested.summary.failed if ingested is not None else 0) + (
        synced.failed if synced is not None else 0
    )
    if failed:
        raise ItemsFailed(count=failed)
