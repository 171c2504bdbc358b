"""`picpipe repair`: restore missing or corrupt originals and lost sidecars from good copies."""

from __future__ import annotations

import typer

from picpipe.catalog.db import open_catalog
from picpipe.catalog.queries import add_session_failures
from picpipe.cli.app import console, emit_json, human_bytes, reports_errors, state
from picpipe.errors import ItemsFailed
from picpipe.jobs.runs import LeasedRun
from picpipe.library.marker import ensure_library, refuse_missing_library
from picpipe.library.repair import RepairReport, repair_library
from picpipe.pipeline.exiftool import ExifToolPool


def register(app: typer.Typer) -> None:
    app.command("repair")(repair)


@reports_errors
def repair(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say what would be restored and from where; write nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Restore missing or corrupt originals (and lost sidecars) from a verified replica or a
    source copy whose hash matches; each restored file is hashed again in place."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    tools = ExifToolPool()
    try:
        if dry_run:
            # Reads only: no run row, no marker, nothing in the library.
            refuse_missing_library(settings.library_root, catalog)
            report = repair_library(settings, catalog, tools=tools, dry_run=True)
            run_id: int | None = None
        else:
            # An unmounted NAS is exit 6 here, never a library "repaired" onto the local disk.
            ensure_library(settings.library_root, catalog)
            with LeasedRun(
                catalog,
                kind="repair",
                device="library",
                keys=["repair"],
                options=settings.runs,
                library_root=settings.library_root,
            ) as run:
                report = repair_library(
                    settings, catalog, tools=tools, run_id=run.id, stop=run.lost.is_set
                )
                run.report = report.report(run.id)
                # Kept with the run: `picpipe sessions N` lists what could not be restored.
                failures = [(f["path"], f["reason"]) for f in run.report.failures]
                if failures:
                    with catalog.write() as db:
                        add_session_failures(db, run.id, failures)
                run.status = run.report.status
                run_id = run.id
    finally:
        tools.close()
        catalog.close()
    if as_json:
        emit_json(report.report(run_id).as_dict() | report.as_dict())
    else:
        _print_report(report)
    if report.unrestored:
        raise ItemsFailed(count=len(report.unrestored))


def _print_report(report: RepairReport) -> None:
    if not report.items:
        console.print(f"checked {report.checked} originals: nothing to repair")
        return
    done = [item for item in report.items if item.outcome != "unrestored"]
    verb = "would put right" if report.dry_run else "put right"
    console.print(
        f"checked {report.checked} originals: {len(report.items)} problem(s), "
        f"{verb} {len(done)} ({human_bytes(report.bytes)} of originals), "
        f"{len(report.unrestored)} could not be restored"
    )
    for item in report.items:
        line = f"  {item.outcome:<20} {item.what:<8} {item.label}: {item.problem}; {item.origin}"
        console.print(line, markup=False)
    if report.dry_run and done:
        console.print("run `picpipe repair` without --dry-run to restore them")
