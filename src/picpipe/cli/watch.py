"""`picpipe watch`: run the live sources in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer

from picpipe.cli.app import console, emit_json, reports_errors, state
from picpipe.errors import PicpipeError
from picpipe.jobs.watch import run_live_sources
from picpipe.pipeline.exiftool import exiftool_command


def register(app: typer.Typer) -> None:
    app.command("watch")(watch)


@reports_errors
def watch(
    ctx: typer.Context,
    names: list[str] = typer.Argument(
        None, help="Live sources to run (kind watched, icloudpd, removable; default: all)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print how each source ended as JSON."),
) -> None:
    """Watch the configured live sources and ingest what settles, until stopped."""
    settings = state(ctx).settings
    exiftool_command()  # a clear error now rather than one per file
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()  # each source ends its current ingest, then returns

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not as_json:
            console.print("watching; stop with Ctrl-C")
        errors = run_live_sources(settings, names or [], stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result: dict[str, Any] = {
        "sources": {name: {"ok": error is None, "error": error} for name, error in errors.items()}
    }
    if as_json:
        emit_json(result)
    else:
        for name, error in errors.items():
            console.print(f"{name}: {'stopped' if error is None else error}")
    failed = [name for name, error in errors.items() if error is not None]
    if failed:
        raise PicpipeError(detail=f"live source(s) stopped with an error: {', '.join(failed)}")
