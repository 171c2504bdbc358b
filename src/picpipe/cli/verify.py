"""`picpipe verify`: re-hash originals against the catalog."""

from __future__ import annotations

import typer

from picpipe.catalog.db import open_catalog
from picpipe.catalog.known_as import source_paths_of
from picpipe.cli.app import console, emit_json, human_bytes, reports_errors, state
from picpipe.cli.report_text import photo_label, sha_of_library_path
from picpipe.errors import IntegrityProblems
from picpipe.library.verify import verify_library


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)


@reports_errors
def verify(
    ctx: typer.Context,
    sample: float | None = typer.Option(
        None, "--sample", min=0.0, max=100.0, help="Check a random PERCENT of originals."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Re-hash originals: report missing, corrupt, untracked and unfinished files."""
    settings = state(ctx).settings
    catalog = open_catalog(settings.catalog_url)
    try:
        report = verify_library(
            catalog, settings.library_root, sample_percent=sample, workers=settings.workers
        )
        # Damaged photos named as people know them: their source path and a short hash.
        known: dict[str, str] = {}
        damaged = [item["path"] for item in (*report.missing, *report.corrupt)]
        if damaged and not as_json:
            shas = {sha for path in damaged if (sha := sha_of_library_path(path))}
            with catalog.session() as db:
                known = source_paths_of(db, shas)
    finally:
        catalog.close()
    if as_json:
        emit_json(report.as_dict())
    else:
        console.print(
            f"checked {report.checked} originals ({report.sampled_percent:g}%): "
            f"{report.ok} ok, {human_bytes(report.bytes)}"
        )
        if report.index_only:
            console.print(
                f"  {report.index_only} index-only asset(s) (mode: index) have no original in "
                "the library: nothing to verify here, their sources hold them"
            )
        for item in report.missing:
            console.print(f"  missing  {photo_label(item['path'], known)}", markup=False)
        for item in report.corrupt:
            label = photo_label(item["path"], known)
            console.print(f"  corrupt  {label}  {item['problem']}", markup=False)
        for path in report.untracked:
            console.print(f"  untracked {path}", markup=False)
        for path in report.temp_files:
            console.print(f"  unfinished {path}", markup=False)
        for note in report.notes:
            console.print(f"  note     {note['path']}: {note['note']}", markup=False)
        for step in report.next_steps():
            console.print(f"next: {step}", markup=False)
    if not report.clean:
        raise IntegrityProblems(count=report.problems)
