"""`picpipe restore-catalog FROM`: the catalog back from a destination's snapshot."""

from __future__ import annotations

from pathlib import Path

import typer

from picpipe.cli.app import console, emit_json, reports_errors, state
from picpipe.cli.sync import open_destinations
from picpipe.destinations.base import Destination, open_destination
from picpipe.errors import ConfigError
from picpipe.jobs.restore_catalog import restore_catalog


def register(app: typer.Typer) -> None:
    app.command("restore-catalog")(restore)


@reports_errors
def restore(
    ctx: typer.Context,
    source: str = typer.Argument(
        ..., metavar="FROM", help="A configured destination, or the folder of a filesystem one."
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a catalog that holds assets (it is lost)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report instead of text."),
) -> None:
    """Rebuild the catalog from the latest snapshot a sync left at a destination."""
    settings = state(ctx).settings
    backend = _backend(settings.destinations, source, ctx)
    try:
        report = restore_catalog(backend, settings.catalog_url, settings.library_root, force=force)
    finally:
        backend.close()
    if as_json:
        emit_json(report.as_dict())
        return
    console.print(
        f"catalog restored from {report.source}: {report.snapshot} ({report.created})",
        markup=False,
    )
    console.print(
        f"  {report.assets} assets, {report.replicas} verified replicas, "
        f"{report.sidecar_replicas} replicated sidecars; destinations: "
        f"{', '.join(report.destinations) or '-'}",
        markup=False,
    )
    console.print(f"  library marker: {report.library_marker}", markup=False)
    console.print("next: `picpipe repair` puts the originals and sidecars back from a replica")


def _backend(
    configured: dict[str, dict[str, object]], source: str, ctx: typer.Context
) -> Destination:
    if source in configured:
        return open_destinations(state(ctx).settings, [source])[source]
    path = Path(source.removeprefix("file://")).expanduser()
    if path.is_dir():
        return open_destination(str(path), {"kind": "filesystem", "path": str(path)})
    names = ", ".join(sorted(configured)) or "none configured"
    raise ConfigError(
        detail=f"{source!r} is neither a configured destination ({names}) nor a folder"
    )
