"""`picpipe thumbs`: make missing thumbnails, or remake all of them, in a process pool."""

from __future__ import annotations

import signal

import typer

from picpipe.catalog.db import open_catalog
from picpipe.cli.app import (
    console,
    emit_json,
    print_failures,
    reports_errors,
    sigterm_interrupts,
    state,
)
from picpipe.cli.progress import run_progress
from picpipe.config import Settings
from picpipe.errors import ThumbnailsFailed
from picpipe.jobs.workflows import thumbnails_run
from picpipe.pipeline.thumbrun import Selection, ThumbSummary


def register(app: typer.Typer) -> None:
    app.command("thumbs")(thumbs)


@reports_errors
def thumbs(
    ctx: typer.Context,
    remake_all: bool = typer.Option(False, "--all", help="Remake the thumbnails of every asset."),
    missing: bool = typer.Option(
        False, "--missing", help="Assets without thumbnails (the default)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, max=64, help="Processes (default thumbs.workers: one per core)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Make tiny, small and medium thumbnails (and their metadata JSON) for the library."""
    if remake_all and missing:
        raise typer.BadParameter("--all and --missing exclude each other")
    settings = state(ctx).settings
    summary = make_thumbnails(
        settings, "all" if remake_all else "missing", workers=workers, quiet=as_json
    )
    if as_json:
        emit_json(summary.as_dict())
    else:
        print_summary(summary)
    if summary.failed:
        raise ThumbnailsFailed(count=summary.failed)


def make_thumbnails(
    settings: Settings, selection: Selection, *, workers: int | None = None, quiet: bool = False
) -> ThumbSummary:
    """The thumbnail workflow on the configured catalog; a live bar when on a terminal."""
    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    previous = sigterm_interrupts()  # a service stop flushes what is done
    try:
        with run_progress("thumbnails", quiet=quiet) as sinks:
            return thumbnails_run(settings, catalog, selection, workers=workers, sinks=sinks)
    finally:
        signal.signal(signal.SIGTERM, previous)
        catalog.close()


def print_summary(summary: ThumbSummary) -> None:
    console.print(
        f"thumbnails: {summary.made} made, {summary.failed} failed, "
        f"{summary.skipped} skipped in {summary.seconds:.1f}s"
    )
    print_failures(summary.failures)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt
