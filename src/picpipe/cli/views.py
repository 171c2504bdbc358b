"""`picpipe views`: build the link views, and `picpipe consumers check`."""

from __future__ import annotations

import typer

from picpipe.catalog.db import open_catalog
from picpipe.cli.app import console, emit_json, reports_errors, state
from picpipe.errors import ConfigError
from picpipe.library.views import build_views

consumers_app = typer.Typer(help="Tools that read the library in place (Immich).")


def register(app: typer.Typer) -> None:
    app.command("views")(views)
    app.add_typer(consumers_app, name="consumers")
    consumers_app.command("check")(consumers_check)


@reports_errors
def views(
    ctx: typer.Context,
    rewrite: bool = typer.Option(
        False, "--rewrite", help="Rebuild every folder, not only those that changed."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Build the views `views.layouts` asks for: folders of links to the originals."""
    settings = state(ctx).settings
    if not settings.views.layouts:
        raise ConfigError(detail="no views configured; set views.layouts, e.g. [by-date]")
    catalog = open_catalog(settings.catalog_url)
    try:
        report = build_views(settings, catalog, rewrite=rewrite)
    finally:
        catalog.close()
    if as_json:
        emit_json(report.as_dict())
        return
    console.print(f"views in {report.root} ({report.link}s, {report.seconds:.2f}s)", markup=False)
    for name, layout in report.layouts.items():
        console.print(
            f"  {name}: {layout.links} links in {layout.folders} folders; "
            f"{layout.rebuilt} rebuilt, {layout.removed} removed",
            markup=False,
        )
        for target in layout.skipped[:20]:
            console.print(f"    not linked (original missing)  {target}", markup=False)


@reports_errors
def consumers_check(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """What each consumer sees: Immich's external library against picpipe's asset count."""
    from picpipe.integrations.immich_library import check_immich

    settings = state(ctx).settings
    if settings.consumers.immich is None:
        raise ConfigError(detail="no consumers configured; set consumers.immich")
    catalog = open_catalog(settings.catalog_url)
    try:
        report = check_immich(settings, catalog)
    finally:
        catalog.close()
    if as_json:
        emit_json({"immich": report.as_dict()})
        return
    console.print(
        f"immich: library {report.library_id} ({report.name}) at {', '.join(report.import_paths)}: "
        f"{report.immich_total} assets in Immich ({report.immich_photos} photos, "
        f"{report.immich_videos} videos), {report.picpipe_assets} in picpipe"
        + ("" if report.in_step else f" — {report.note}"),
        markup=False,
    )
