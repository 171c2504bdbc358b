"""`picpipe duplicates`: pictures the library holds more than once with different metadata."""

from __future__ import annotations

from typing import Any

import typer

from picpipe.catalog.db import open_catalog
from picpipe.catalog.duplicates import PayloadGroup, payload_groups
from picpipe.cli.app import console, emit_json, human_bytes, reports_errors, state

MAX_GROUPS = 100_000


def register(app: typer.Typer) -> None:
    app.command("duplicates")(duplicates)


@reports_errors
def duplicates(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the groups as JSON."),
) -> None:
    """List assets that are the same picture with different metadata (nothing is merged)."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url)
    try:
        with catalog.session() as db:
            groups = [_group(g) for g in payload_groups(db, limit=MAX_GROUPS)]
    finally:
        catalog.close()
    if as_json:
        emit_json({"groups": groups, "count": len(groups)})
        return
    console.print(f"{len(groups)} pictures held more than once with different metadata")
    for group in groups:
        console.print(f"payload {group['payload_sha256'][:16]}", markup=False)
        for asset in group["assets"]:
            console.print(
                f"  {asset['sha256'][:16]}  {asset['taken']}  {human_bytes(asset['size']):>9}  "
                f"{asset['library_path']}  ({asset['name']})",
                markup=False,
            )


def _group(group: PayloadGroup) -> dict[str, Any]:
    return {
        "payload_sha256": group.payload_sha256,
        "assets": [
            {
                "sha256": a.sha256,
                "name": a.original_name,
                "size": a.size,
                "taken": a.taken_local.isoformat(),
                "date_source": a.date_source,
                "library_path": a.library_path,
            }
            for a in group.assets
        ],
    }
