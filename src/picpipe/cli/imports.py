"""`picpipe init` and `picpipe import`."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError

from picpipe.catalog.db import open_catalog
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
from picpipe.config_template import render_template
from picpipe.errors import ConfigError, ItemsFailed
from picpipe.jobs.workflows import ingest
from picpipe.library.guards import refuse_own_folder
from picpipe.library.marker import ensure_library
from picpipe.library.writer import check_writable
from picpipe.pipeline.exiftool import ExifToolPool, exiftool_command, exiftool_version
from picpipe.redact import validation_problems
from picpipe.sources.base import Source, load_source_kind
from picpipe.sources.folder import FolderSource
from picpipe.sources.watched import WatchedOptions

if TYPE_CHECKING:
    from picpipe.pipeline.runner import SessionSummary

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
    settings = state(ctx).settings
    version = exiftool_version()
    home = settings.home_root
    home.mkdir(parents=True, exist_ok=True)
    created_config = False
    if not settings.config_file.exists():
        settings.config_file.parent.mkdir(parents=True, exist_ok=True)
        settings.config_file.write_text(render_template(), encoding="utf-8")
        created_config = True
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
        None, help="Folders to import, or names of sources in the config (default: all)."
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
    as_json: bool = typer.Option(False, "--json", help="Print the session summary as JSON."),
) -> None:
    """Import folders into the library: hash, deduplicate, date, and place every original."""
    settings = state(ctx).settings
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
        tools.close()
        catalog.close()
    summary = result.summary
    if as_json:
        emit_json(result.as_dict())
    else:
        _print_summary(summary)
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


def resolve_sources(settings: Settings, names: list[str]) -> list[Source]:
    """Turn arguments into sources: configured names first, then folder paths."""
    configured = settings.sources
    if not names:
        names = list(configured)
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
        if not path.is_dir():
            raise ConfigError(detail=f"{name}: not a folder (import takes folders)")
        resolved = path.resolve()
        refuse_own_folder(settings, resolved, "import folder")
        sources.append(FolderSource(str(resolved), resolved, settings.scan))
    return sources


def build_source(settings: Settings, name: str, options: dict[str, object]) -> Source:
    kind = str(options.get("kind", "folder"))
    cls = load_source_kind(kind)
    fields = {k: v for k, v in options.items() if k != "kind"}
    try:
        parsed = cls.Options(**fields)
    except ValidationError as exc:
        # "key: problem" only: pydantic's own text repeats the values (a password, a key).
        problems = validation_problems(exc, prefix=f"sources.{name}.")
        raise ConfigError(detail="; ".join(problems)) from None
    if kind == "folder":
        folder = Path(parsed.path).expanduser()
        refuse_own_folder(settings, folder, f"sources.{name}:")
        return FolderSource(name, folder, settings.scan)
    if isinstance(parsed, WatchedOptions):  # watched, icloudpd: an import is one reconcile
        folder = Path(parsed.path).expanduser()
        refuse_own_folder(settings, folder, f"sources.{name}:")
        source: Source = cls(name, folder, settings.scan, parsed)
        return source
    raise ConfigError(detail=f"sources.{name}: kind {kind!r} cannot be imported yet")


def _print_summary(summary: SessionSummary) -> None:
    console.print(
        f"session {summary.session_id} {summary.status}: "
        f"{summary.seen} seen, {summary.new} new, {summary.duplicate} duplicate, "
        f"{summary.unchanged} unchanged, {summary.failed} failed, {summary.skipped} skipped, "
        f"{human_bytes(summary.bytes)} added in {summary.seconds:.1f}s"
    )
    print_failures(summary.failures)
