"""`picpipe init` and `picpipe import`."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from picpipe.catalog.db import open_catalog, private_sqlite_file
from picpipe.cli.app import (
    console,
    emit_json,
    human_bytes,
    print_failures,
    reports_errors,
    sigterm_interrupts,
    state,
)
from picpipe.cli.progress import run_progress
from picpipe.config import Settings, mask_url
from picpipe.config_template import render_template, write_private_file
from picpipe.errors import ConfigError, ItemsFailed
from picpipe.jobs.workflows import ingest
from picpipe.library.guards import refuse_own_folder
from picpipe.library.marker import ensure_library
from picpipe.library.writer import check_writable
from picpipe.pipeline.exiftool import ExifToolPool, exiftool_command, exiftool_version
from picpipe.sources.base import Source
from picpipe.sources.configured import configured_source, importable_names
from picpipe.sources.folder import FolderSource
from picpipe.sources.single_file import SingleFileSource

if TYPE_CHECKING:
    from picpipe.pipeline.runner import SessionSummary
    from picpipe.sources.base import Source

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("import")(import_)


@reports_errors
def init(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create the local root, the library root, a commented config file and the catalog."""
    state(ctx).config_may_be_missing = True
    settings = state(ctx).settings
    version = exiftool_version()
    home = settings.home_root
    try:
        home.mkdir(parents=True, exist_ok=True)
        created_config = write_private_file(settings.config_file, render_template())
        private_sqlite_file(settings.catalog_url)
    except OSError as exc:
        raise ConfigError(
            detail=f"cannot create {exc.filename or home}: {exc.strerror or exc}"
        ) from None
    catalog = open_catalog(settings.catalog_url)
    try:
        # Before anything is created there: a catalog whose library is on an unmounted NAS
        # gets the one-line error, not a fresh library on the local disk.
        identity = ensure_library(settings.library_root, catalog)
        check_writable(settings.library_root)
    finally:
        catalog.close()
    result = {
        "home": str(home),
        "library": str(settings.library_root),
        "config": str(settings.config_file),
        "config_created": created_config,
        "catalog": mask_url(settings.catalog_url),
        "exiftool": version,
        "library_id": identity.library_id,
    }
    if as_json:
        emit_json(result)
        return
    console.print(f"library  {result['library']}")
    console.print(f"home     {result['home']}")
    console.print(f"config   {result['config']}" + (" (created)" if created_config else ""))
    console.print(f"catalog  {result['catalog']}")
    console.print(f"exiftool {version}")


@reports_errors
def import_(
    ctx: typer.Context,
    paths: list[str] = typer.Argument(
        None,
        help="Folders or files to import, or names of sources in the config (default: all).",
    ),
    move: bool = typer.Option(
        False,
        "--move",
        help="Inbox folders only: delete each source file once its copy is verified.",
    ),
    workers: int | None = typer.Option(None, "--workers", min=1, max=64, help="Parallel files."),
    no_thumbs: bool = typer.Option(
        False, "--no-thumbs", help="Make no thumbnails now (later: `picpipe thumbs`)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List what would be read and skipped; write nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the session summary as JSON."),
) -> None:
    """Import folders into the library: hash, deduplicate, date, and place every original."""
    settings = state(ctx).settings
    if move:
        refuse_move_outside_inboxes(settings, paths or list(settings.sources))
    if dry_run:
        planned = resolve_sources(settings, paths or [])
        try:
            _dry_run(settings, planned, as_json)
        finally:
            _close(planned)
        return
    exiftool_command()  # a clear error now rather than one per file
    sources = resolve_sources(settings, paths or [])
    catalog = open_catalog(settings.catalog_url, busy_timeout=settings.runs.busy_timeout)
    tools = ExifToolPool()
    previous = sigterm_interrupts()  # a service stop ends the session cleanly
    try:
        with run_progress("importing", quiet=as_json) as sinks:
            result = ingest(
                settings,
                catalog,
                sources,
                tools=tools,
                sinks=sinks,
                workers=workers,
                move=move,
                thumbnails=not no_thumbs,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
        _close(sources)  # a remote source logs out and removes its downloads
        tools.close()
        catalog.close()
    summary = result.summary
    if as_json:
        emit_json(result.as_dict())
    else:
        _print_summary(summary, source_roots(settings))
        _print_thumbs(result.thumbs)
    if summary.failed:
        raise ItemsFailed(count=summary.failed)


def _print_thumbs(thumbs: dict[str, Any] | None) -> None:
    """Failed thumbnails leave the exit code alone: the originals are safe, the state says why."""
    if thumbs is None:
        return
    if "error" in thumbs:
        console.print(f"thumbnails: none made ({thumbs['error']})", markup=False)
        return
    console.print(f"thumbnails: {thumbs['made']} made, {thumbs['failed']} failed")
    for failure in thumbs.get("_failures", [])[:20]:
        console.print(f"  no thumbnails  {failure['path']}: {failure['reason']}", markup=False)


def _dry_run(settings: Settings, sources: list[Source], as_json: bool) -> None:
    """The plan of an import: read-only on the catalog, which is not even created."""
    from picpipe.catalog.db import sqlite_catalog_path
    from picpipe.cli.report_text import failure_path
    from picpipe.pipeline.dry_run import plan_import

    path = sqlite_catalog_path(settings.catalog_url)
    catalog = None
    if path is None or path.exists():
        catalog = open_catalog(settings.catalog_url, migrate=False)
    try:
        plan = plan_import(catalog, sources)
    finally:
        if catalog is not None:
            catalog.close()
    if as_json:
        emit_json(plan.as_dict())
        return
    roots = {**source_roots(settings), **{s.name: s.location for s in sources}}
    for item in plan.would_read[:200]:
        shown = failure_path(f"{item['source']}:{item['ref']}", roots)
        console.print(f"  would read  {shown}  {human_bytes(item['size'])}", markup=False)
    if len(plan.would_read) > 200:
        console.print(f"  … and {len(plan.would_read) - 200} more (see --json)")
    for problem in plan.problems:
        shown = failure_path(f"{problem['source']}:{problem['ref']}", roots)
        console.print(f"  problem  {shown}  {problem['reason']}", markup=False)
    total = human_bytes(sum(i["size"] for i in plan.would_read))
    console.print(
        f"dry run: {len(plan.would_read)} file(s) would be read ({total}; new ones imported, "
        f"duplicates recognised by their hash), {plan.unchanged} unchanged, "
        f"{len(plan.skipped)} skipped, {len(plan.problems)} problem(s); nothing was written"
    )


def _close(sources: list[Source]) -> None:
    for source in sources:
        source.close()


def refuse_move_outside_inboxes(settings: Settings, names: list[str]) -> None:
    """``--move`` deletes source files: only configured inbox sources (``move: true``) allow it.

    A folder given by path counts when it is an inbox's path. Everything else is refused
    before anything is read, so a mistyped folder never loses its files.
    """
    inboxes = {
        name: Path(str(options.get("path", ""))).expanduser().resolve()
        for name, options in settings.sources.items()
        if options.get("move") is True
    }
    refused = [
        name
        for name in names
        if name not in inboxes and Path(name).expanduser().resolve() not in inboxes.values()
    ]
    if refused:
        known = ", ".join(sorted(inboxes)) or "none configured"
        raise ConfigError(
            detail=f"--move deletes source files and is allowed only for inbox sources "
            f"(a source with `move: true`); not an inbox: {', '.join(refused)}; inboxes: {known}"
        )


def resolve_sources(settings: Settings, names: list[str]) -> list[Source]:
    """Turn arguments into sources: configured names first, then folder paths."""
    configured = settings.sources
    if not names:
        # Cards are read when inserted (`picpipe watch`), not by a plain import of everything.
        names = importable_names(settings)
        if not names:
            raise ConfigError(
                detail="no folder given and no sources configured; try `picpipe import DIR`"
            )
    sources: list[Source] = []
    for name in names:
        if name in configured:
            sources.append(build_source(settings, name, configured[name]))
            continue
        path = Path(name).expanduser()
        if not path.exists():
            raise ConfigError(detail=f"{name}: no such folder and no source of that name")
        if path.is_file():
            resolved = path.resolve()
            refuse_own_folder(settings, resolved.parent, "import file")
            sources.append(SingleFileSource(resolved, settings.scan))
            continue
        if not path.is_dir():
            raise ConfigError(detail=f"{name}: neither a folder nor a regular file")
        resolved = path.resolve()
        refuse_own_folder(settings, resolved, "import folder")
        sources.append(FolderSource(str(resolved), resolved, settings.scan))
    return sources


def build_source(settings: Settings, name: str, options: dict[str, object]) -> Source:
    return configured_source(settings, name, options)


def source_roots(settings: Settings) -> dict[str, str]:
    """Configured folder sources by name → their folder (for printing local paths)."""
    return {
        name: str(Path(str(options["path"])).expanduser())
        for name, options in settings.sources.items()
        if options.get("kind", "folder") == "folder" and options.get("path")
    }


def _print_summary(summary: SessionSummary, roots: dict[str, str]) -> None:
    console.print(
        f"session {summary.session_id} {summary.status}: "
        f"{summary.seen} seen, {summary.new} new, {summary.duplicate} duplicate, "
        f"{summary.unchanged} unchanged, {summary.failed} failed, {summary.skipped} skipped, "
        f"{human_bytes(summary.bytes)} added in {summary.seconds:.1f}s"
    )
    print_failures(summary.failures, roots=roots)
