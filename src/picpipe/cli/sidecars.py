"""`picpipe sidecars`: count, re-import and write the XMP sidecars beside the originals."""

from __future__ import annotations

import typer

from picpipe.catalog.db import open_catalog
from picpipe.cli.app import console, emit_json, reports_errors, state
from picpipe.errors import ItemsFailed
from picpipe.jobs.runs import LeasedRun
from picpipe.pipeline.exiftool import ExifToolPool, exiftool_command
from picpipe.pipeline.sidecar_sync import SidecarReport, sync_sidecars


def register(app: typer.Typer) -> None:
    app.command("sidecars")(sidecars)


@reports_errors
def sidecars(
    ctx: typer.Context,
    reimport: bool = typer.Option(
        False, "--reimport", help="Read sidecars changed since picpipe last saw them."
    ),
    write: bool = typer.Option(
        False, "--write", help="Write missing sidecars and those picpipe never wrote or read."
    ),
    rewrite_all: bool = typer.Option(
        False, "--all", help="With --write: rewrite every sidecar (refreshes picpipe's fields)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """XMP sidecars: count them, --reimport edits made in other tools, --write missing ones."""
    # Without options only stats files and reads nothing. Writing merges: fields other tools
    # wrote are kept, and the keywords, rating, label, title, description and face regions a
    # sidecar already has are never overwritten.
    if rewrite_all and not write:
        raise typer.BadParameter("--all rewrites sidecars and needs --write", param_hint="--all")
    settings = state(ctx).settings
    if reimport or write:
        exiftool_command()  # a clear error now rather than one per sidecar
    catalog = open_catalog(settings.catalog_url)
    tools = ExifToolPool()
    try:
        if reimport or write:
            # One sidecar pass at a time per catalog (CatalogBusy otherwise).
            with LeasedRun(
                catalog,
                kind="sidecars",
                device="reimport" if reimport and not write else "write",
                keys=["sidecars"],
                options=settings.runs,
            ) as run:
                report = sync_sidecars(
                    settings,
                    catalog,
                    reimport=reimport,
                    write=write,
                    rewrite_all=rewrite_all,
                    tools=tools,
                )
                run.status = "completed_with_failures" if report.failed else "completed"
                run.report = report.report(run.id)
                run_id: int | None = run.id
        else:
            report = sync_sidecars(settings, catalog, tools=tools)
            run_id = None
    finally:
        tools.close()
        catalog.close()
    if as_json:
        emit_json(report.report(run_id).as_dict() | report.as_dict())
    else:
        _print_report(report, acted=reimport or write)
    if report.failed:
        raise ItemsFailed(count=report.failed)


def _print_report(report: SidecarReport, *, acted: bool) -> None:
    console.print(
        f"{report.assets} assets: {report.present} with a sidecar, {report.missing} without, "
        f"{report.changed} changed since picpipe last wrote or read them"
    )
    if acted:
        console.print(
            f"re-imported {report.reimported}, written {report.written}, "
            f"failed {report.failed} in {report.seconds:.1f}s"
        )
    else:
        if report.changed:
            console.print("run `picpipe sidecars --reimport` to read the changes")
        if report.missing:
            console.print("run `picpipe sidecars --write` to write the missing ones")
    for failure in report.failures[:50]:
        console.print(f"  failed  {failure['path']}: {failure['reason']}", markup=False)
    if len(report.failures) > 50:
        console.print(f"  … and {len(report.failures) - 50} more (see --json)")
