"""`cards`: card sessions, their state and what keeps a card from being safe to format."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from picpipe.catalog.cards import card_sessions
from picpipe.catalog.db import open_catalog
from picpipe.cli.app import console, emit_json, human_bytes, reports_errors, state

if TYPE_CHECKING:
    from picpipe.catalog.models import CardSession


def register(app: typer.Typer) -> None:
    app.command("cards")(cards)


@reports_errors
def cards(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="How many recent card sessions."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Card sessions, newest first: state, files, "safe to format" and what blocks it."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    try:
        with catalog.session() as db:
            rows = [card_dict(row) for row in card_sessions(db, limit)]
    finally:
        catalog.close()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no card sessions yet (`picpipe watch` runs the removable sources)")
        return
    table = Table("id", "label", "uuid", "state", "files", "safe to format", "size", "started")
    for r in rows:
        safe = "yes" if r["safe_to_format"] else f"no ({len(r['blocking'])} blocking)"
        table.add_row(
            str(r["id"]),
            r["label"],
            r["uuid"],
            r["state"],
            str(r["files"]),
            safe,
            human_bytes(r["capacity"]),
            r["started_at"],
        )
    console.print(table)
    for r in rows:
        for item in r["blocking"][:10]:
            console.print(f"  {r['label']} #{r['id']}: {item['path']}: {item['reason']}")
        if len(r["blocking"]) > 10:
            console.print(f"  {r['label']} #{r['id']}: … {len(r['blocking']) - 10} more (--json)")


def card_dict(row: CardSession) -> dict[str, Any]:
    """The ``--json`` shape of one card session."""
    blocking = list(row.blocking or [])
    if row.state not in ("safe", "not_safe"):
        # Unfinished: the reason is the session's own state, not a file.
        why = row.error or f"session {row.state}"
        blocking = [{"path": "", "reason": why}]
    return {
        "id": row.id,
        "source": row.source_name,
        "label": row.label,
        "uuid": row.uuid,
        "capacity": row.capacity,
        "reader": row.reader,
        "state": row.state,
        "files": row.files,
        "safe_to_format": row.state == "safe",
        "blocking": blocking,
        "insertions": row.insertions,
        "started_at": row.started_at.isoformat(timespec="seconds"),
        "ended_at": row.ended_at.isoformat(timespec="seconds") if row.ended_at else None,
    }
